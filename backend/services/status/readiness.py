"""Can speech be made right now, and with this voice? Read from the workers' heartbeats, never from the routes.

The landing page's cards, the Studio's header and its Generate button ask here every few seconds, so a person
learns that no worker runs (and why: stopped, no weights, warming up) before pressing Generate, instead of
watching a job wait. A heartbeat lives `heartbeat.TTL_S` seconds and a cleanly stopped worker withdraws its own,
so a stopped worker shows within that time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import redis

from backend.core.redis_client import get_redis
from backend.queue import heartbeat
from backend.services.status.health import engine_readiness
from backend.services.voices.service import CLONED_PREFIX, NO_CLONING_ENGINE, unavailable_engines, unavailable_voice_reason

Status = Literal["ready", "warming", "down"]
NO_WORKER = "no worker is running: start one with `make run` or `make worker`"
WARMING = "warming up: {engines} {verb} loading the model and running a first step; the first generation waits for it"


@dataclass(frozen=True)
class Readiness:
    """`ready`, `warming` (it will speak, after the model has loaded) or `down` (it will not: `reason` says why)."""

    status: Status
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"status": self.status, "reason": self.reason}


def _workers() -> list[heartbeat.WorkerInfo] | None:
    try:
        return heartbeat.live_workers(get_redis())
    except redis.RedisError:
        return None


def _speakers(workers: list[heartbeat.WorkerInfo]) -> list[heartbeat.WorkerInfo]:
    """The workers that speak or were told to (a webhook worker loads no engine and is no speech worker)."""
    return [w for w in workers if w.engines or w.unavailable]


def _of_engines(names: set[str], engines: dict[str, dict]) -> Readiness | None:
    """Ready when one of `names` is loaded and warm; warming when they are all still warming; None when absent."""
    present = {name: engines[name] for name in names if name in engines}
    if not present:
        return None
    ready = sorted(name for name, engine in present.items() if not engine.get("warming"))
    if ready:
        engine = present[ready[0]]
        return Readiness("ready", f"spoken by {ready[0]} on {engine.get('device', 'a worker')}")
    warming = sorted(present)
    return Readiness("warming", WARMING.format(engines=", ".join(warming), verb="is" if len(warming) == 1 else "are"))


def speech_readiness(workers: list[heartbeat.WorkerInfo] | None = None) -> Readiness:
    """Whether any engine can speak now (the Studio and the OpenAI-compatible API as a whole)."""
    workers = _workers() if workers is None else workers
    if workers is None:
        return Readiness("down", "the job queue is unreachable")
    workers = _speakers(workers)
    engines = engine_readiness(workers)
    found = _of_engines(set(engines), engines)
    if found is not None:
        return found
    reasons = unavailable_engines(workers)
    if reasons:
        return Readiness("down", "; ".join(f"{name}: {reason}" for name, reason in sorted(reasons.items())))
    return Readiness("down", NO_WORKER)


def voice_readiness(voice: str, workers: list[heartbeat.WorkerInfo] | None = None) -> Readiness:
    """Whether `voice` (a built-in id, or a cloned voice's `voice_…` id) can be spoken now, and if not why (the
    Studio puts "No worker for this voice" before the reason)."""
    workers = _workers() if workers is None else workers
    if workers is None:
        return Readiness("down", "the job queue is unreachable")
    workers = _speakers(workers)
    engines = engine_readiness(workers)
    if voice.startswith(CLONED_PREFIX):
        cloning = {name for name, engine in engines.items() if engine.get("supports_cloning")}
        return _of_engines(cloning, engines) or Readiness("down", NO_CLONING_ENGINE)
    if not voice:
        return Readiness("down", f"no voice to speak with: {NO_WORKER}" if not workers
                         else "choose a voice from the library")
    announcing = {engine["name"] for w in workers for engine in w.engines
                  if any(v.get("id") == voice for v in engine.get("voices", []))}
    found = _of_engines(announcing, engines)
    if found is not None:
        return found
    reason = unavailable_voice_reason(voice, workers)
    if reason is not None:
        return Readiness("down", reason)
    return Readiness("down", NO_WORKER if not workers else "no live worker serves it")
