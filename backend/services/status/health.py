"""Health of every part LockN depends on, in one report.

Each check is a small function that raises (or returns a message) and is timed
here; the report is what `/health` serves and what the dashboard's status cards
show. A check marked `required` makes the whole report `down` when it fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Literal

from backend.core import db
from backend.core.errors import first_line
from backend.core.redis_client import get_redis
from backend.core.settings import get_settings
from backend.queue import heartbeat
from backend.queue.routing import queue_for
from backend.services.voices.service import unavailable_engines

Status = Literal["ok", "down"]


@dataclass(frozen=True)
class HealthCheck:
    """A named probe: returns a short description on success, raises on failure."""

    name: str
    probe: Callable[[], str]
    required: bool = True


@dataclass
class CheckResult:
    name: str
    status: Status
    latency_ms: float
    message: str
    required: bool


@dataclass
class HealthReport:
    status: Status
    checks: list[CheckResult]

    def as_dict(self) -> dict:
        return {"status": self.status, "checks": {c.name: asdict(c) for c in self.checks}}


def check_database() -> str:
    db.ping()
    return "PostgreSQL" if not get_settings().uses_sqlite else "SQLite (embedded)"


def check_broker() -> str:
    get_redis().ping()
    return "Redis" if get_settings().redis_url else "Redis (embedded)"


def required_queues() -> set[str]:
    """The queues of the engines this deployment is configured for (`LOCKN_ENGINES`)."""
    return {queue_for(name) for name in get_settings().engine_names}


def check_workers() -> str:
    workers = heartbeat.live_workers(get_redis())
    served = {queue for worker in workers for queue in worker.queues}
    missing = sorted(required_queues() - served)
    if missing:
        raise RuntimeError(f"no worker has reported on queue {', '.join(missing)} in the last "
                           f"{heartbeat.TTL_S} s; start one with `make run` or `make worker`")
    return f"{len(workers)} worker(s): " + ", ".join(f"{w.hostname} [{','.join(w.queues)}]" for w in workers)


def engine_readiness(workers: list[heartbeat.WorkerInfo]) -> dict[str, dict]:
    """Each engine some live worker announces → its description, from a worker where it is ready if any (a GPU
    worker announces its engines `warming` until its first decoding step has run)."""
    engines: dict[str, dict] = {}
    for engine in (e for w in workers for e in w.engines):
        if engine["name"] not in engines or engines[engine["name"]].get("warming"):
            engines[engine["name"]] = engine
    return engines


def streams_note(engine: dict) -> str:
    """How many sentences an engine speaks together ("" for one at a time), and when the card holds fewer than
    `LOCKN_GPU_MAX_STREAMS` asked for, that it does (more jobs then wait their turn)."""
    streams, asked = int(engine.get("streams", 1)), int(engine.get("streams_asked", 1))
    if streams < asked:
        return f"{streams} streams at once, not the {asked} of LOCKN_GPU_MAX_STREAMS: the GPU holds no more"
    return f"{streams} streams at once" if streams > 1 else ""


#: How many of the voices that failed to load for one reason a note names before it counts the rest.
NAMED_VOICE_FAILURES = 3


def voice_failures_note(engine: dict) -> str:
    """Which of an engine's voices could not be loaded, grouped by why ("" when all could): they are missing from
    the voice library, and the operator who dropped them in needs to know which and why."""
    by_reason: dict[str, list[str]] = {}
    for voice, why in sorted((engine.get("voice_failures") or {}).items()):
        by_reason.setdefault(why, []).append(voice)
    return "; ".join(_voices_not_loaded(voices, why) for why, voices in sorted(by_reason.items()))


def _voices_not_loaded(voices: list[str], why: str) -> str:
    """"2 voices not loaded, .onnx model unreadable (InvalidProtobuf): en_US-a-low, en_US-b-low"."""
    named = ", ".join(voices[:NAMED_VOICE_FAILURES])
    more = f" and {len(voices) - NAMED_VOICE_FAILURES} more" if len(voices) > NAMED_VOICE_FAILURES else ""
    return f"{len(voices)} voice{'s' if len(voices) > 1 else ''} not loaded, {why}: {named}{more}"


def engine_notes(engine: dict) -> list[str]:
    """What a status card and `/health` add to an engine's name: its streams and its voices that failed."""
    return [note for note in (streams_note(engine), voice_failures_note(engine)) if note]


def check_engines() -> str:
    workers = heartbeat.live_workers(get_redis())
    engines = engine_readiness(workers)
    missing = sorted(set(get_settings().engine_names) - set(engines))
    if missing:
        reasons = unavailable_engines(workers)
        raise RuntimeError("; ".join(f"{name}: {reasons[name]}" if name in reasons
                                     else f"no live worker has the {name} engine loaded" for name in missing))
    warming = sorted(name for name, engine in engines.items() if engine.get("warming"))
    if warming:
        raise RuntimeError(f"warming up: {', '.join(warming)} (loading the model and running its first step)")
    return "engines loaded: " + ", ".join(
        f"{name} ({'; '.join(notes)})" if (notes := engine_notes(engines[name])) else name for name in sorted(engines))


#: The checks `/health` runs, all required.
DEFAULT_CHECKS: tuple[HealthCheck, ...] = (
    HealthCheck("database", check_database),
    HealthCheck("broker", check_broker),
    HealthCheck("worker", check_workers),
    HealthCheck("engine", check_engines),
)


def run_check(check: HealthCheck) -> CheckResult:
    """Run one probe and time it; a failure becomes a `down` result with a readable message."""
    started = time.perf_counter()
    try:
        message, status = check.probe(), "ok"
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency is reported, not raised
        message, status = first_line(exc), "down"
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return CheckResult(check.name, status, latency_ms, message, check.required)  # type: ignore[arg-type]


def health_report(checks: tuple[HealthCheck, ...] = DEFAULT_CHECKS) -> HealthReport:
    """Run every check concurrently (a slow dependency costs its own timeout once, not the sum)."""
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        results = list(pool.map(run_check, checks))
    healthy = all(r.status == "ok" for r in results if r.required)
    return HealthReport("ok" if healthy else "down", results)


def service_cards() -> list[dict[str, str]]:
    """One card per part of the platform for the dashboard: web, database, broker, each queue, each engine."""
    report = {check.name: check for check in health_report().checks}
    cards = [{"name": "Web", "status": "ok", "detail": "serving this page", "latency": ""}]
    for name, title in (("database", "Database"), ("broker", "Broker")):
        check = report[name]
        cards.append({"name": title, "status": check.status, "detail": check.message,
                      "latency": f"{check.latency_ms:.1f} ms"})
    try:
        workers = heartbeat.live_workers(get_redis())
    except Exception:  # noqa: BLE001 - the broker card already says why
        workers = []
    for queue in sorted(required_queues() | {q for w in workers for q in w.queues}):
        serving = [w.hostname for w in workers if queue in w.queues]
        cards.append({"name": f"Queue {queue}", "status": "ok" if serving else "down",
                      "detail": ", ".join(serving) or "no worker is consuming this queue", "latency": ""})
    engines = engine_readiness(workers)
    reasons = unavailable_engines(workers)
    for name in sorted(set(get_settings().engine_names) | set(engines) | set(reasons)):
        engine = engines.get(name)
        detail = (" · ".join((engine["device"], f"{len(engine.get('voices', []))} voice(s)", *engine_notes(engine)))
                  if engine else reasons.get(name, "not loaded by any worker"))
        status = "down" if engine is None else "warming up" if engine.get("warming") else "ok"
        if status == "warming up":
            detail = f"{engine['device']} · loading the model and running its first step"
        cards.append({"name": f"Engine {name}", "status": status, "detail": detail, "latency": ""})
    return cards
