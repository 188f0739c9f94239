"""Worker presence, published to Redis so any web replica can tell who is alive and what they serve.

Each worker process refreshes `lockn:workers:<hostname>` every `INTERVAL_S`
seconds with a `TTL_S` expiry. A worker that dies simply stops refreshing, and
its entry disappears: no broadcast round trip, no waiting on replies in `/health`.

A prefork worker's main process announces its engines as their files describe them (it loads no model); each pool
process then reports what it really loaded (`report_pool_process`: the voices it could load, an engine whose load
failed), and the main process's beat says that from then on (`WorkerInfo.with_pool_reports`), so a damaged voice
or a failed engine is not announced as ready by the one process that never tried to load it. Each beat reads the
reports of the pool as it is then: a pool process that died without saying so (SIGKILL, the OOM killer) has its
report dropped (`drop_dead_pool_processes`), and what its replacement loaded is announced instead.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

import redis

KEY_PREFIX = "lockn:workers:"
#: A hash per worker: pool process id → what that process loaded (`report_pool_process`).
POOL_KEY_PREFIX = "lockn:worker-pool:"
INTERVAL_S = 3.0
TTL_S = 9
#: How long a worker's pool reports outlive its last beat: a day (a worker killed without withdrawing leaves them
#: no longer), not `TTL_S` (a broker out of reach for a few beats must not lose them: they are written once).
POOL_TTL_S = 86400
logger = logging.getLogger(__name__)


@dataclass
class WorkerInfo:
    """What a worker tells the rest of the platform about itself."""

    hostname: str
    queues: list[str]
    engines: list[dict] = field(default_factory=list)
    #: Engines this worker was told to run (LOCKN_ENGINES) but cannot, with the reason (e.g. "no weights: run …").
    unavailable: dict[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    seen_at: float = field(default_factory=time.time)

    # The two below give the fields new objects rather than editing them: the heartbeat thread may be
    # serialising the old ones at that moment.

    def replace_engine(self, description: dict) -> None:
        """Engine `description["name"]` is now described so (a GPU worker's, once it has loaded and spoken)."""
        self.engines = [description if engine["name"] == description["name"] else engine for engine in self.engines]

    def mark_unavailable(self, name: str, reason: str) -> None:
        """Engine `name` will not speak here, because of `reason` (its load or first sentence failed)."""
        self.engines = [engine for engine in self.engines if engine["name"] != name]
        self.unavailable = {**self.unavailable, name: reason}

    def with_pool_reports(self, reports: list[dict]) -> WorkerInfo:
        """This worker as its pool processes' reports (`report_pool_process`) say it: each engine as loaded, its
        voices those the main process found on disk less any a pool process could not load, and an engine that
        failed in any pool process unavailable (some of its jobs would fail). `self` (what the main process
        announced, read again from disk when voices are added: `HeartbeatThread`'s `refresh`) is left as it is,
        so each beat starts again from it: an engine a dead process failed is announced again once no live
        process says it failed, and a voice added since the pool loaded is offered (a pool process loads it
        before its next job)."""
        derived = replace(self, engines=list(self.engines), unavailable=dict(self.unavailable))
        for report in reports:
            for description in report.get("engines", []):
                derived.replace_engine(_as_loaded(description, self.engine(description["name"])))
        for report in reports:
            for name, reason in report.get("failed", {}).items():
                derived.mark_unavailable(name, reason)
        return derived

    def engine(self, name: str) -> dict:
        """Engine `name` as announced (empty when it is not)."""
        return next((engine for engine in self.engines if engine["name"] == name), {})


def _as_loaded(loaded: dict, announced: dict) -> dict:
    """A pool process's description of an engine, with the voices the main process found on disk less those that
    process could not load, and the failures both saw."""
    on_disk = announced.get("voices", loaded.get("voices", []))
    known = {voice["id"] for voice in on_disk} | set(announced.get("voice_failures", {}))
    revisions = {voice["id"]: voice.get("revision", "") for voice in on_disk}
    failed_on = loaded.get("voice_failure_revisions", {})

    def still_news(voice_id: str) -> bool:
        """A failure the pool process saw is no news for a voice no longer on disk (removed since its last job),
        nor for one whose files were replaced since it failed on them (fixed: it loads before its next job)."""
        if announced and voice_id not in known:
            return False
        return voice_id not in failed_on or revisions.get(voice_id, failed_on[voice_id]) == failed_on[voice_id]

    failures = {**announced.get("voice_failures", {}),
                **{voice_id: why for voice_id, why in loaded.get("voice_failures", {}).items() if still_news(voice_id)}}
    voices = [voice for voice in on_disk if voice["id"] not in failures]
    return {**loaded, "voices": voices, "voice_failures": failures}


def publish(client: redis.Redis, info: WorkerInfo) -> None:
    """Record `info` as alive for the next `TTL_S` seconds (and its pool's reports for `POOL_TTL_S`)."""
    info.seen_at = time.time()
    with client.pipeline(transaction=False) as pipe:
        pipe.set(KEY_PREFIX + info.hostname, json.dumps(asdict(info)), ex=TTL_S)
        pipe.expire(POOL_KEY_PREFIX + info.hostname, POOL_TTL_S)
        pipe.execute()


def withdraw(client: redis.Redis, hostname: str) -> None:
    """Remove a worker at clean shutdown, so it stops counting at once."""
    client.delete(KEY_PREFIX + hostname, POOL_KEY_PREFIX + hostname)


def forget_pool_reports(client: redis.Redis, hostname: str) -> None:
    """Drop what an earlier run's pool processes of worker `hostname` reported (a worker starting again, before
    it forks its pool)."""
    client.delete(POOL_KEY_PREFIX + hostname)


def report_pool_process(client: redis.Redis, hostname: str, engines: list[dict], failed: dict[str, str]) -> None:
    """Pool process (this process) of worker `hostname` loaded `engines` (their heartbeat descriptions) and could
    not load those in `failed` (→ why)."""
    client.hset(POOL_KEY_PREFIX + hostname, str(os.getpid()), json.dumps({"engines": engines, "failed": failed}))


def forget_pool_process(client: redis.Redis, hostname: str) -> None:
    """This pool process of worker `hostname` exits: its report goes with it."""
    client.hdel(POOL_KEY_PREFIX + hostname, str(os.getpid()))


def pool_reports(client: redis.Redis, hostname: str) -> list[dict]:
    """What each live pool process of worker `hostname` reported, oldest process id first."""
    reports = client.hgetall(POOL_KEY_PREFIX + hostname)
    return [json.loads(reports[pid]) for pid in sorted(reports, key=int)]


def drop_dead_pool_processes(client: redis.Redis, hostname: str) -> None:
    """Drop the reports of worker `hostname`'s pool processes that are no longer running (killed without their
    shutdown signal: SIGKILL, the OOM killer). Called by the worker's main process, on the pool's machine."""
    dead = [pid for pid in client.hkeys(POOL_KEY_PREFIX + hostname) if not process_running(int(pid))]
    if dead:
        client.hdel(POOL_KEY_PREFIX + hostname, *dead)


def process_running(pid: int) -> bool:
    """Whether process `pid` exists on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge dead
    return True


def live_workers(client: redis.Redis) -> list[WorkerInfo]:
    """Every worker that published within the last `TTL_S` seconds."""
    keys = sorted(client.scan_iter(match=KEY_PREFIX + "*", count=100))
    values = client.mget(keys) if keys else []
    return [_worker_info(json.loads(value)) for value in values if value]


def _worker_info(record: dict) -> WorkerInfo:
    """A heartbeat as this version reads it: fields a newer worker adds are skipped, so a machine upgraded
    before the web tier (a GPU host, say) is still seen."""
    known = {f.name for f in fields(WorkerInfo)}
    return WorkerInfo(**{key: value for key, value in record.items() if key in known})


class HeartbeatThread(threading.Thread):
    """Publishes `info` until `stop()`; errors are retried on the next beat (Redis may come back)."""

    def __init__(self, client: redis.Redis, info: WorkerInfo,
                 refresh: Callable[[WorkerInfo], None] | None = None) -> None:
        """`refresh(info)`, before each beat, brings what the main process announces up to date (a CPU worker
        reads its voice folders again when their files changed)."""
        super().__init__(name="lockn-heartbeat", daemon=True)
        self._client, self._info, self._stopped = client, info, threading.Event()
        self._refresh = refresh

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.beat()
            except redis.RedisError:
                pass  # the broker is down; /health reports that through its own check
            self._stopped.wait(INTERVAL_S)

    def beat(self) -> None:
        """Publish this worker as its live pool processes say it is (a GPU worker has no pool reports: as
        announced)."""
        if self._refresh is not None:
            try:
                self._refresh(self._info)
            except Exception:  # noqa: BLE001 - a folder that cannot be read must not stop the worker's beat
                logger.exception("worker %s could not read its engines' voices again", self._info.hostname)
        hostname = self._info.hostname
        drop_dead_pool_processes(self._client, hostname)
        publish(self._client, self._info.with_pool_reports(pool_reports(self._client, hostname)))

    def stop(self) -> None:
        self._stopped.set()
        try:
            withdraw(self._client, self._info.hostname)
        except redis.RedisError:
            pass
