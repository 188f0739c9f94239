"""Prometheus metrics, counted in every process of a machine and read together by `GET /metrics`.

Web and worker processes (Celery's pool children included) each write their counts to files in one
directory, prometheus_client's multiprocess mode; the web process adds them up when scraped. The
directory is `PROMETHEUS_MULTIPROC_DIR` when the environment names one, else `<data dir>/metrics`; it
must be named before the first metric is made, which is why this module names it at the top.
`make run` empties it at start (counts of processes from an earlier run must not be added again).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from backend.core.settings import get_settings

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir() -> Path:
    return Path(os.environ.get(MULTIPROC_VARIABLE) or get_settings().data_dir / "metrics")


def reset_metrics_dir() -> None:
    """Start counting afresh (the supervisor, before it starts any process that counts)."""
    folder = metrics_dir()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


os.environ.setdefault(MULTIPROC_VARIABLE, str(metrics_dir()))
metrics_dir().mkdir(parents=True, exist_ok=True)

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values  # noqa: E402
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

# prometheus_client picks its value class when first imported; if something imported it before the directory
# was named (a test's own import of its parser, say), pick again now, before the first metric below exists.
values.ValueClass = values.get_value_class()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

HTTP_REQUESTS = Counter("lockn_http_requests", "HTTP requests answered, by route template and status",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram("lockn_http_request_duration_seconds", "Time until the answer started, by route",
                         ["route"], buckets=LATENCY_BUCKETS)
KEY_VERIFICATIONS = Counter("lockn_key_verifications", "API key checks, by outcome (ok, or the refusal's code: "
                            "rate_limited, revoked, quota_exceeded, …)", ["outcome"])
ADMISSION_REFUSALS = Counter("lockn_admission_refusals", "Jobs refused before they were queued, by reason",
                             ["reason"])
JOBS = Counter("lockn_jobs", "Jobs a worker finished, by engine and outcome", ["engine", "outcome"])
QUEUE_WAIT = Histogram("lockn_job_queue_wait_seconds", "Time a job waited in its queue before a worker took it",
                       ["engine"], buckets=LATENCY_BUCKETS)
FIRST_AUDIO = Histogram("lockn_job_first_audio_seconds", "Time from a worker taking a job to its first audio",
                        ["engine"], buckets=LATENCY_BUCKETS)
REALTIME_FACTOR = Histogram("lockn_engine_realtime_factor", "Engine time per second of audio (below 1: faster than "
                            "real time)", ["engine"], buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 4, 8))


class _MachineCounts:
    """Every process's counts from the directory, added up; a file a process never finished writing (it was
    killed while creating it: the file is empty) is skipped instead of failing every scrape after it."""

    def collect(self):  # type: ignore[no-untyped-def]
        files = [str(f) for f in metrics_dir().glob("*.db") if f.stat().st_size >= MIN_FILE_BYTES]
        return MultiProcessCollector.merge(files, accumulate=True)


#: A metrics file starts with its 8-byte header; anything shorter was cut off as it was made.
MIN_FILE_BYTES = 8


def _machine_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_MachineCounts())
    return registry


def serve_metrics(port: int) -> None:
    """This machine's counts on `port` (`/metrics`, plain HTTP, in a daemon thread): for worker machines, which
    run no web process. Bind it where only Prometheus can reach it."""
    from prometheus_client import start_http_server

    start_http_server(port, registry=_machine_registry())


def exposition(queue_depths: dict[str, int]) -> bytes:
    """Every process's counts, added up, and the queues' depths now, in Prometheus' text format."""
    registry = _machine_registry()
    registry.register(_QueueDepths(queue_depths))
    return generate_latest(registry)


class _QueueDepths:
    """Queue depth is read from the broker when scraped, not counted by any process."""

    def __init__(self, depths: dict[str, int]) -> None:
        self.depths = depths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("lockn_queue_depth", "Jobs waiting in each queue", labels=["queue"])
        for queue, depth in sorted(self.depths.items()):
            family.add_metric([queue], depth)
        yield family
