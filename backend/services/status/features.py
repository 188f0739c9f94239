"""Which product features are live, judged from what is really running.

A feature is live when the routes it needs are mounted in this app and, for
features that need hardware or an engine, when a live worker provides it. The
landing page reads this; nothing on the page is hard-coded as live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from backend.core.redis_client import get_redis
from backend.queue import heartbeat
from backend.services.status.readiness import speech_readiness


@dataclass(frozen=True)
class Feature:
    key: str
    title: str
    description: str
    icon: str
    #: Paths (pages or API routes) that must be served for the feature to be live.
    routes: tuple[str, ...]
    #: An extra runtime condition on the live workers, e.g. "a GPU worker is up".
    needs: Callable[[list[heartbeat.WorkerInfo]], bool] | None = field(default=None, compare=False)
    #: Whether it speaks: then its routes alone do not make it live, a warm engine on a live worker does
    #: (`readiness.speech_readiness`); without one the card says why (no worker, warming up, no weights).
    speaks: bool = False


def _has_cloning_engine(workers: list[heartbeat.WorkerInfo]) -> bool:
    return any(engine.get("supports_cloning") for w in workers for engine in w.engines)


def _has_gpu_worker(workers: list[heartbeat.WorkerInfo]) -> bool:
    return any("gpu" in w.queues for w in workers)


FEATURES: tuple[Feature, ...] = (
    Feature("studio", "Voice Studio", "Type, pick a voice, hear it, download it: WAV, MP3, FLAC or Opus.",
            "audio-lines", ("/studio", "/api/voice/jobs"), speaks=True),
    Feature("keys", "API keys", "Scoped keys with per-key rate limits, usage and instant revocation.",
            "key-round", ("/dashboard", "/api/keys")),
    Feature("openai", "OpenAI-compatible API", "Point the OpenAI SDK or Open WebUI at /v1 and it just works.",
            "plug", ("/v1/audio/speech", "/v1/models"), speaks=True),
    Feature("cloning", "Voice cloning", "Clone a voice zero-shot from a 10–30 second reference clip.",
            "mic", ("/api/voice/voices",), needs=_has_cloning_engine),
    Feature("gpu_queue", "GPU worker queue", "Add GPU machines as Celery workers; the web tier never changes.",
            "cpu", (), needs=_has_gpu_worker),
)


class RouteTable:
    """The paths this process serves; filled once by the app module when it is built."""

    paths: set[str] = set()

    @classmethod
    def register(cls, paths: Iterable[str]) -> None:
        # Reflex keys its home page as "index".
        cls.paths |= {"/" if p.strip("/") in ("", "index") else "/" + p.strip("/") for p in paths}


def _live_workers() -> list[heartbeat.WorkerInfo]:
    try:
        return heartbeat.live_workers(get_redis())
    except redis.RedisError:
        return []


def feature_statuses(served: set[str] | None = None,
                     workers: list[heartbeat.WorkerInfo] | None = None) -> list[dict[str, str]]:
    """Each feature with `status` = `live`, `warming`, `down` (it is built but cannot work now; `detail` says
    why) or `soon`, ready for the landing page's cards."""
    served = RouteTable.paths if served is None else served
    workers = _live_workers() if workers is None else workers
    speech = speech_readiness(workers)
    cards = []
    for feature in FEATURES:
        live, detail = all(route in served for route in feature.routes), ""
        if live and feature.needs is not None:
            live = feature.needs(workers)
        status = "live" if live else "soon"
        if live and feature.speaks and speech.status != "ready":
            status, detail = ("warming" if speech.status == "warming" else "down"), speech.reason
        cards.append({"key": feature.key, "title": feature.title, "description": feature.description,
                      "icon": feature.icon, "status": status, "detail": detail})
    return cards
