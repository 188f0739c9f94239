"""`/v1/audio/speech` benchmark: latency, time to first byte and throughput vs the engine alone.

    .venv/bin/python -m bench.speech [--rounds 4] [--requests 8]

Starts the API (granian, one process), the embedded broker and one Piper worker, then sends
~200-character WAV requests (each text unique, so the cache never answers) with 1 and 4 concurrent
clients. Prints p50/p95 latency, p50 time to first byte, throughput, and the same texts through the
engine alone in this process. Prints figures; asserts nothing.

The machine's own speed drifts by 10-15 % within minutes (a shared VM), more than the margins being
measured, so the engine alone is measured right beside the stack: single requests alternate with
the engine's (1 client), and each 4-client batch sits between two halves of an engine batch. Each
ratio is taken within its round; the figures printed are medians over rounds.

Throughput is counted from the first completed request to the last, for the engine and the stack
alike: a batch's start (four client threads opening connections, the first request reaching an idle
worker) is ramp-up, not throughput, and with two requests per client it weighed about 3 %.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import threading
import time

import httpx

from bench.stack import local_stack

TEXT = ("LockN runs text to speech on your own hardware. This request is about two hundred characters "
        "long. The first sentence should reach the listener well before the last one is done, request number {n}.")
VOICE = "en_US-joe-medium"
#: Concurrent clients of the throughput figure.
CLIENTS = 4


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def loaded_engine():  # type: ignore[no-untyped-def]
    """The Piper engine as a worker loads it, warmed up with one request."""
    from workers.engine_loader import build_engine

    engine = build_engine("piper")
    engine.load()
    for _ in engine.synthesize(TEXT.format(n=0), VOICE):
        pass
    return engine


def steady_throughput(finished: list[float], started: float) -> float:
    """Requests per second between the first completion and the last, so a batch's start (the first
    request travelling through the API and the queue to an idle worker) is not counted as throughput."""
    finished = sorted(finished)
    if len(finished) < 2:
        return len(finished) / (finished[-1] - started)
    return (len(finished) - 1) / (finished[-1] - finished[0])


def engine_only(engine, runs: int, counter: itertools.count) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The engine alone in this process, one request after another: its p50 and its own throughput."""
    times, finished = [], []
    started = time.perf_counter()
    for _ in range(runs):
        began = time.perf_counter()
        for _ in engine.synthesize(TEXT.format(n=next(counter)), VOICE):
            pass
        finished.append(time.perf_counter())
        times.append(finished[-1] - began)
    return {"p50": statistics.median(times), "throughput": steady_throughput(finished, started)}


def cache_timings(base: str, key: str, counter: itertools.count) -> tuple[float, float]:
    """Seconds for a new request (the engine runs) and for the same request again (the cache answers)."""
    body = {"model": "tts-1", "voice": VOICE, "input": TEXT.format(n=next(counter)), "response_format": "wav"}
    timings = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        for _ in range(2):
            started = time.perf_counter()
            assert http.post("/v1/audio/speech", json=body).status_code == 200
            timings.append(time.perf_counter() - started)
            _wait_newest_job_stored(http)
    return timings[0], timings[1]


def _wait_newest_job_stored(http: httpx.Client, timeout_s: float = 30) -> None:
    """A streamed response ends when the last sentence is spoken, a moment before the file is stored
    and the job can answer from the cache: wait for that, as a client sending the same text later would."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if http.get("/api/voice/jobs", params={"limit": 1}).json()["data"][0]["status"] == "succeeded":
            return
        time.sleep(0.02)
    raise SystemExit("the first job was not stored within 30 s")


def run_clients(base: str, key: str, clients: int, requests: int, counter: itertools.count) -> dict[str, float]:
    latencies, first_bytes, finished, lock = [], [], [], threading.Lock()

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
                    finished.append(time.perf_counter())
                    latencies.append(total)
                    first_bytes.append(first or total)

    failures: list[BaseException] = []

    def guarded() -> None:
        try:
            client()
        except BaseException as exc:  # a client that died would leave its requests out of the figures
            failures.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=guarded) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} of {clients} clients failed, so no figure is printed: {failures[0]!r}")
    return {"p50": percentile(latencies, .5), "p95": percentile(latencies, .95),
            "ttfb": percentile(first_bytes, .5), "throughput": steady_throughput(finished, started)}


def alternating(engine, base: str, key: str, requests: int,  # type: ignore[no-untyped-def]
                counter: itertools.count) -> tuple[dict[str, float], dict[str, float]]:
    """One engine request, then one request through the stack, `requests` times: the engine's p50 and the
    stack's figures, taken under the same conditions."""
    alone, through = [], []
    for _ in range(requests):
        alone.append(engine_only(engine, 1, counter)["p50"])
        through.append(run_clients(base, key, 1, 1, counter))
    latencies = [r["p50"] for r in through]
    return {"p50": statistics.median(alone)}, {
        "p50": statistics.median(latencies), "p95": percentile(latencies, .95),
        "ttfb": statistics.median(r["ttfb"] for r in through),
        "throughput": len(through) / sum(latencies)}


def bracketed(engine, base: str, key: str, requests: int,  # type: ignore[no-untyped-def]
              counter: itertools.count) -> tuple[dict[str, float], float]:
    """A 4-client batch between two halves of an engine batch: the stack's figures and the engine's throughput."""
    before = engine_only(engine, requests // 2, counter)
    four = run_clients(base, key, CLIENTS, requests, counter)
    after = engine_only(engine, requests // 2, counter)
    engine_seconds = 1 / before["throughput"] + 1 / after["throughput"]
    return four, 2 / engine_seconds  # the two halves' rates averaged over time (each half has as many requests)


def median_of(rounds: list[dict[str, float]], name: str) -> float:
    return statistics.median(r[name] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=8, help="requests per round and mode (a multiple of 4)")
    parser.add_argument("--concurrency", type=int, default=1, help="worker pool processes")
    parser.add_argument("--smoke", action="store_true", help="a few seconds with tiny numbers: proves the bench still runs (tests/test_benches.py)")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.requests = 1, 4
    engine = loaded_engine()
    # The key may hold more jobs than there are clients: a job's slot is freed when its worker has stored the
    # file, a moment after its client has the last byte and sends the next request (4 at the default cap of 4
    # answered a client 429 now and then).
    with local_stack(args.concurrency, max_concurrent_jobs=2 * CLIENTS) as stack:
        base, key = stack.base_url, stack.key
        counter = itertools.count(1000)
        run_clients(base, key, 1, 2, counter)  # warm-up
        print(f"LockN /v1/audio/speech — {os.cpu_count()} CPU(s), {len(TEXT.format(n=1000))} characters, "
              f"WAV, Piper, one worker with {args.concurrency} pool process(es); {args.rounds} rounds of "
              f"{args.requests} requests per mode, engine alone and stack alternating")
        rounds: dict[str, list[dict[str, float]]] = {"engine": [], "1": [], "4": []}
        for number in range(1, args.rounds + 1):
            alone, one = alternating(engine, base, key, args.requests, counter)
            four, alone_throughput = bracketed(engine, base, key, args.requests, counter)
            alone["throughput"] = alone_throughput
            one["ratio_p50"], four["ratio_throughput"] = one["p50"] / alone["p50"], four["throughput"] / alone_throughput
            for name, result in (("engine", alone), ("1", one), ("4", four)):
                rounds[name].append(result)
            print(f"  round {number}: engine {alone['p50'] * 1000:6.1f} ms {alone_throughput:.2f}/s | "
                  f"1 client p50 {one['p50'] * 1000:6.1f} ms ({one['ratio_p50']:.3f}x) | "
                  f"4 clients {four['throughput']:.2f}/s ({four['ratio_throughput']:.3f}x)")
        print(f"engine only (in process)  p50 {median_of(rounds['engine'], 'p50') * 1000:7.1f} ms   "
              f"{median_of(rounds['engine'], 'throughput'):.2f} requests/s")
        for clients in ("1", "4"):
            r = rounds[clients]
            print(f"{clients} client(s): p50 {median_of(r, 'p50') * 1000:7.1f} ms  p95 {median_of(r, 'p95') * 1000:7.1f} ms  "
                  f"first byte p50 {median_of(r, 'ttfb') * 1000:6.1f} ms  {median_of(r, 'throughput'):.2f} requests/s")
        print(f"p50 (1 client) / engine p50, median of rounds: {median_of(rounds['1'], 'ratio_p50'):.3f} (target <= 1.10)")
        print(f"throughput (4 clients) / engine throughput, median of rounds: "
              f"{median_of(rounds['4'], 'ratio_throughput'):.3f} (target >= 0.95)")
        miss, hit = cache_timings(base, key, counter)
        print(f"cache: miss {miss * 1000:7.1f} ms, identical request again {hit * 1000:6.1f} ms "
              f"= {miss / hit:.0f}x faster")


if __name__ == "__main__":
    main()
