"""`/v1/audio/speech` benchmark: latency, time to first byte and throughput vs the engine alone.

    .venv/bin/python -m bench.speech [--requests 12]

Starts the API (granian, one process), the embedded broker and one Piper worker, then sends
~200-character WAV requests (each text unique, so the cache never answers) with 1 and 4 concurrent
clients. Prints p50/p95 latency, p50 time to first byte, throughput, and the same text through the
engine alone in this process. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

from bench.stack import local_stack

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEXT = ("LockN runs text to speech on your own hardware. This request is about two hundred characters "
        "long. The first sentence should reach the listener well before the last one is done, request number {n}.")
VOICE = "en_US-joe-medium"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def engine_only(runs: int) -> float:
    from workers.engines.piper import PiperEngine

    engine = PiperEngine()
    engine.load()
    times = []
    for n in range(runs + 1):
        started = time.perf_counter()
        for _ in engine.synthesize(TEXT.format(n=n), VOICE):
            pass
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def worker_engine_p50(since: float) -> float:
    """Median engine time the worker recorded for the jobs created after `since` (Unix time)."""
    from datetime import UTC, datetime

    from sqlmodel import Session, select

    from backend.db import get_engine
    from backend.models import Job

    with Session(get_engine()) as session:
        jobs = session.exec(select(Job).where(Job.created_at >= datetime.fromtimestamp(since, UTC))).all()
    return statistics.median(job.engine_time_s or 0.0 for job in jobs) if jobs else 0.0


def cache_timings(base: str, key: str, counter: itertools.count) -> tuple[float, float]:
    """Seconds for a new request (the engine runs) and for the same request again (the cache answers)."""
    body = {"model": "tts-1", "voice": VOICE, "input": TEXT.format(n=next(counter)), "response_format": "wav"}
    timings = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        for _ in range(2):
            started = time.perf_counter()
            assert http.post("/v1/audio/speech", json=body).status_code == 200
            timings.append(time.perf_counter() - started)
    return timings[0], timings[1]


def run_clients(base: str, key: str, clients: int, requests: int, counter: itertools.count) -> dict[str, float]:
    latencies, first_bytes, lock = [], [], threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
            for _ in range(requests // clients):
                body = {"model": "tts-1", "voice": VOICE, "input": TEXT.format(n=next(counter)),
                        "response_format": "wav"}
                started = time.perf_counter()
                first = None
                with http.stream("POST", "/v1/audio/speech", json=body) as response:
                    assert response.status_code == 200, response.read()
                    for chunk in response.iter_bytes():
                        if chunk and first is None:
                            first = time.perf_counter() - started
                total = time.perf_counter() - started
                with lock:
                    latencies.append(total)
                    first_bytes.append(first or total)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"p50": percentile(latencies, .5), "p95": percentile(latencies, .95),
            "ttfb": percentile(first_bytes, .5), "throughput": len(latencies) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=1, help="worker pool processes")
    args = parser.parse_args()
    engine_s = engine_only(5)
    with local_stack(args.concurrency) as stack:
        base, key = stack.base_url, stack.key
        counter = itertools.count(1000)
        run_clients(base, key, 1, 2, counter)  # warm-up
        print(f"LockN /v1/audio/speech — {os.cpu_count()} CPU(s), {len(TEXT.format(n=1000))} characters, "
              f"WAV, Piper, one worker with {args.concurrency} pool process(es)")
        print(f"engine only (in process)      {engine_s * 1000:7.1f} ms   = {1 / engine_s:.2f} requests/s")
        for clients in (1, 4):
            since = time.time()
            r = run_clients(base, key, clients, args.requests, counter)
            print(f"{clients} client(s): p50 {r['p50'] * 1000:7.1f} ms  p95 {r['p95'] * 1000:7.1f} ms  "
                  f"first byte p50 {r['ttfb'] * 1000:6.1f} ms  {r['throughput']:.2f} requests/s  "
                  f"| p50/engine {r['p50'] / engine_s:.3f}  throughput/engine {r['throughput'] * engine_s:.3f}")
            print(f"           engine time inside the worker, p50 {worker_engine_p50(since) * 1000:7.1f} ms "
                  "(the same engine sharing 2 cores with the API server and the clients)")
        miss, hit = cache_timings(base, key, counter)
        print(f"cache: miss {miss * 1000:7.1f} ms, identical request again {hit * 1000:6.1f} ms "
              f"= {miss / hit:.0f}x faster")


if __name__ == "__main__":
    main()
