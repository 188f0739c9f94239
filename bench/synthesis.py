"""Synthesis benchmark: engine alone vs end to end through the queue. Prints figures; asserts nothing.

    .venv/bin/python -m bench.synthesis [--runs 5] [--smoke]

For a 200-character sentence: engine-only time (in this process), end-to-end
time through the real queue (embedded broker, one worker, enqueue → succeeded),
queue overhead as a share of engine time, and the real-time factor per engine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time

SENTENCE = ("LockN runs text to speech on your own hardware, and this sentence is exactly long enough to "
            "measure how quickly a worker turns two hundred characters of text into natural sounding audio.")


def engine_only(name: str, voice: str, runs: int) -> tuple[float, float]:
    """Median seconds to synthesize SENTENCE, and the audio seconds it produced."""
    from workers.engine_loader import build_engine

    engine = build_engine(name)
    engine.load()
    rate = engine.sample_rate(voice)
    times, audio = [], 0.0
    for _ in range(runs + 1):
        started = time.perf_counter()
        samples = sum(len(chunk) for chunk in engine.synthesize(SENTENCE, voice))
        times.append(time.perf_counter() - started)
        audio = samples / rate
    return statistics.median(times[1:]), audio


def end_to_end(voice: str, runs: int) -> tuple[float, dict[str, float]]:
    """Median seconds from enqueue to `succeeded`, and where the time went.

    Completion is awaited on the job's live stream (`finished_audio`, what the API waits on), not by
    polling, so the benchmark does not steal CPU from the worker on a small machine.
    """
    from backend.ops.supervisor import Supervisor, embedded_broker_command, wait_for_socket, worker_command
    from backend.core.db import migrate
    from backend.core.settings import get_settings
    from backend.services.jobs.audio import finished_audio
    from backend.services.jobs.service import enqueue_synthesis
    from backend.ops.harness import wait_for_worker_heartbeat

    migrate()
    supervisor = Supervisor()
    supervisor.start("broker", embedded_broker_command(get_settings()))
    wait_for_socket(get_settings().embedded_broker_socket)
    supervisor.start("worker", worker_command(), env=dict(os.environ))
    try:
        wait_for_worker_heartbeat()
        times, parts = [], []
        for _ in range(runs + 1):
            started = time.perf_counter()
            job = enqueue_synthesis(f"bench-{len(times)}", SENTENCE, voice, "wav")  # a new owner: never a cache hit
            status, _ = asyncio.run(finished_audio(job.id, job.owner))
            times.append(time.perf_counter() - started)
            parts.append({"queue wait (created → started)": (status.started_at - status.created_at).total_seconds(),
                          "worker (started → finished)": (status.finished_at - status.started_at).total_seconds(),
                          "  of which engine": status.engine_time_s or 0.0})
        breakdown = {name: statistics.median(p[name] for p in parts[1:]) for name in parts[0]}
        return statistics.median(times[1:]), breakdown
    finally:
        supervisor.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="a few seconds with tiny numbers: proves the bench still runs (tests/test_benches.py)")
    args = parser.parse_args()
    if args.smoke:
        args.runs = 1
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ.update({"LOCKN_DATA_DIR": data_dir, "LOCKN_ENV": "test"})
        for name in ("LOCKN_DATABASE_URL", "LOCKN_REDIS_URL"):
            os.environ.pop(name, None)
        voice = "en_US-joe-medium"
        print(f"LockN synthesis benchmark — {os.cpu_count()} CPU(s), {len(SENTENCE)} characters, WAV")
        engine_s, audio_s = engine_only("piper", voice, args.runs)
        queued_s, breakdown = end_to_end(voice, args.runs)
        overhead = queued_s - engine_s
        print(f"piper  engine only    {engine_s * 1000:8.1f} ms   audio {audio_s:.2f} s   RTF {engine_s / audio_s:.3f}")
        print(f"piper  through queue  {queued_s * 1000:8.1f} ms   (enqueue → succeeded, encode + file + DB included)")
        for name, seconds in breakdown.items():
            print(f"  {name:<32} {seconds * 1000:8.1f} ms")
        print(f"queue overhead        {overhead * 1000:8.1f} ms   = {100 * overhead / engine_s:.1f} % of engine time "
              f"(target < 10 %)")


if __name__ == "__main__":
    main()
