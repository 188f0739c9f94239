"""Soak: N minutes of mixed traffic at a set rate from several clients, then the figures.

Traffic (by weight): key checks (`GET /api/keys/self`), voice listing
(`GET /api/voice/voices`), and synthesis (`POST /v1/audio/speech`, a short
sentence, WAV, Piper; every request a new text so the cache never answers).
Requests are paced open-loop: each client sends at its share of `--rate`, and a
request that comes back late does not delay the schedule, so an overloaded
server shows up as latency and errors instead of as a politely lower rate.

Prints throughput, error counts by status, p50/p95/p99 per kind and overall, and
the resident memory of every process of the stack at the start and the end.
    python -m bench.soak --minutes 5 --rate 8 --clients 4
"""

from __future__ import annotations

import argparse
import itertools
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx
import psutil

from bench.stack import local_stack

VOICE = "en_US-joe-medium"
#: (kind, weight): mostly cheap API traffic, a steady trickle of synthesis.
MIX = (("key_check", 6), ("voice_list", 3), ("speech", 1))


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    late: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: int | str, seconds: float) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            self.statuses[status] += 1


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def send(http: httpx.Client, kind: str, counter: itertools.count) -> int:
    if kind == "key_check":
        return http.get("/api/keys/self").status_code
    if kind == "voice_list":
        return http.get("/api/voice/voices").status_code
    body = {"model": "tts-1", "voice": VOICE, "response_format": "wav",
            "input": f"Soak request number {next(counter)} says hello from LockN."}
    return http.post("/v1/audio/speech", json=body).status_code


def client(base: str, key: str, rate: float, until: float, results: Results, counter: itertools.count) -> None:
    kinds, weights = zip(*MIX)
    interval = 1.0 / rate
    next_at = time.monotonic() + random.random() * interval
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        while next_at < until:
            if (wait := next_at - time.monotonic()) > 0:
                time.sleep(wait)
            elif wait < -interval:
                with results.lock:
                    results.late += 1
            kind = random.choices(kinds, weights)[0]
            started = time.perf_counter()
            try:
                status: int | str = send(http, kind, counter)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            results.add(kind, status, time.perf_counter() - started)
            next_at += interval


def warm_up(base: str, key: str, counter: itertools.count) -> None:
    """Every kind of request once, so the start figures include a loaded voice model, not its first load."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        for kind, _weight in MIX:
            send(http, kind, counter)


def memory(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """Resident MiB of each process (and its children, e.g. a worker's pool), by name."""
    sizes = {}
    for name, process in processes.items():
        try:
            tree = [process, *process.children(recursive=True)]
            sizes[name] = sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20
        except psutil.NoSuchProcess:
            sizes[name] = 0.0
    return sizes


def sample_memory(processes: dict[str, psutil.Process], every_s: float, until: float,
                  timeline: list[tuple[float, dict[str, float]]]) -> None:
    """Append (seconds since start, RSS by process) every `every_s` until `until`: growth shows as a slope."""
    started = time.monotonic()
    while time.monotonic() < until:
        time.sleep(min(every_s, max(0.0, until - time.monotonic())))
        timeline.append((time.monotonic() - started, memory(processes)))


def report(results: Results, wall: float, start_rss: dict[str, float],
           timeline: list[tuple[float, dict[str, float]]]) -> None:
    every = [s for samples in results.latencies.values() for s in samples]
    print(f"{len(every)} requests in {wall:.0f} s = {len(every) / wall:.2f} requests/s "
          f"({results.late} sent more than one interval late)")
    print("statuses: " + ", ".join(f"{status}: {count}" for status, count in sorted(results.statuses.items(), key=str)))
    for kind, samples in [*sorted(results.latencies.items()), ("all", every)]:
        print(f"  {kind:<11} n={len(samples):5d}  p50 {percentile(samples, .5) * 1000:7.1f} ms  "
              f"p95 {percentile(samples, .95) * 1000:7.1f} ms  p99 {percentile(samples, .99) * 1000:7.1f} ms")
    end_rss = timeline[-1][1]
    print("resident memory (MiB), start → end:")
    for name in start_rss:
        print(f"  {name:<8} {start_rss[name]:7.1f} → {end_rss[name]:7.1f}  ({end_rss[name] - start_rss[name]:+.1f})")
    names = list(start_rss)
    print("resident memory over time (MiB): " + "  ".join(f"{name:>8}" for name in names))
    for seconds, sizes in [(0.0, start_rss), *timeline]:
        print(f"  {seconds:6.0f} s{'':24}" + "  ".join(f"{sizes[name]:8.1f}" for name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=8.0, help="requests per second, all clients together")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds between memory samples")
    parser.add_argument("--smoke", action="store_true", help="a few seconds with tiny numbers: proves the bench still runs (tests/test_benches.py)")
    args = parser.parse_args()
    if args.smoke:
        args.minutes, args.rate, args.clients, args.sample_every = 0.1, 4.0, 2, 2.0
    with local_stack() as stack:
        processes = {name: psutil.Process(child.pid) for name, child in stack.supervisor.children}
        results, counter = Results(), itertools.count(1)
        warm_up(stack.base_url, stack.key, counter)
        start_rss = memory(processes)
        until = time.monotonic() + args.minutes * 60
        started = time.monotonic()
        timeline: list[tuple[float, dict[str, float]]] = []
        threads = [threading.Thread(target=client, args=(stack.base_url, stack.key, args.rate / args.clients, until,
                                                         results, counter)) for _ in range(args.clients)]
        threads.append(threading.Thread(target=sample_memory, args=(processes, args.sample_every, until, timeline)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
        print(f"LockN soak — {psutil.cpu_count()} CPU(s), {args.clients} clients, {args.rate} requests/s target, "
              f"{args.minutes} min; mix {', '.join(f'{k} {w}' for k, w in MIX)}")
        report(results, wall, start_rss, timeline)


if __name__ == "__main__":
    main()
