"""Flood: can one heavy (or hostile) key freeze LockN for everyone else? Prints figures; asserts nothing.

    python -m bench.flood [--requests 200] [--bombs 20] [--seconds 20] [--smoke]

Loopback only, on a throwaway stack (`bench.stack`, with `make run`'s webhook worker). One key sends
`--requests` concurrent speech requests (unique texts, so the cache never answers) and `--bombs`
decompression-bomb uploads (8 channels at 192 kHz) at once, while a second key keeps making paced requests.
Printed: `/health/live` p99, the second key's voice-list p99 and speech p50, each idle and under the flood; how the
flood was answered (only 200/429/503, no timeouts expected); the web process's resident memory growth. Targets:
health p99 < 50 ms, voice list p99 < 100 ms, second key's speech p50 at most 2× idle, memory growth < 100 MB.

Then the webhook-abuse phase: a third owner points eleven endpoints (one over the cap) at a trickling server (a
real socket server sending a header byte every 2–4 s, `bench.trickler`), sends ten test events and ten resends
a second (the limit is ten a minute) and speaks short texts one request at a time (each success is ten more
deliveries), while the second key keeps its pace again. Printed: the same figures against the same idle ones,
how the abuse was answered, and how many deliveries the trickling server held at once. Same targets.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import httpx
import numpy as np
import psutil
import soundfile as sf

from bench.soak import percentile
from bench.stack import local_stack
from bench.trickler import Trickler

VOICE = "en_US-joe-medium"


def bomb() -> bytes:
    """A small FLAC that would decode to 8 channels × 192 kHz × 20 s (~120 MB of float samples)."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", samplerate=192_000, channels=8, format="FLAC") as out:
        second = np.zeros((192_000, 8), dtype=np.float32)
        for _ in range(20):
            out.write(second)
    return buffer.getvalue()


async def timed(request) -> tuple[float, int | str]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    try:
        status = (await request).status_code
    except httpx.TimeoutException:
        status = "timeout"
    return time.perf_counter() - started, status


class PacedClient:
    """The second key: health, voice list and speech at a steady pace, timing each."""

    def __init__(self, http: httpx.AsyncClient, key: str) -> None:
        self.http, self.headers = http, {"Authorization": f"Bearer {key}"}
        self.samples: dict[str, list[float]] = {"health": [], "voices": [], "speech": []}
        self.count = 0

    async def run(self, seconds: float) -> None:
        """Timed rounds for `seconds`, after one untimed round: the first requests of a client open its
        connections and import what httpx loads on first use, the client's cost, not the server's (it made
        the idle column's p99, 36-90 ms, where every later request took under 20)."""
        await asyncio.gather(self.http.get("/health/live"),
                             self.http.get("/api/voice/voices", headers=self.headers))
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.count += 1
            calls = [("health", self.http.get("/health/live")),
                     ("voices", self.http.get("/api/voice/voices", headers=self.headers))]
            if self.count % 10 == 0:
                calls.append(("speech", self.http.post("/v1/audio/speech", headers=self.headers, json={
                    "model": "tts-1", "voice": VOICE, "input": f"Paced request {self.count} {time.time()}.",
                    "response_format": "wav"})))
            for kind, result in zip([k for k, _ in calls], await asyncio.gather(*(timed(c) for _, c in calls))):
                self.samples[kind].append(result[0])
            await asyncio.sleep(0.1)


async def flood(http: httpx.AsyncClient, key: str, requests: int, bombs: int) -> Counter:
    headers = {"Authorization": f"Bearer {key}"}
    clip = bomb()
    speech = [http.post("/v1/audio/speech", headers=headers, json={
        "model": "tts-1", "voice": VOICE, "input": f"Flood request number {n} at {time.time()}.",
        "response_format": "wav"}) for n in range(requests)]
    uploads = [http.post("/api/voice/voices", headers=headers, data={"name": f"bomb {n}", "transcript": "words"},
                         files={"audio": ("bomb.flac", clip, "audio/flac")}) for n in range(bombs)]
    answers = await asyncio.gather(*(timed(call) for call in speech + uploads))
    return Counter(status for _, status in answers)


async def webhook_abuse(http: httpx.AsyncClient, key: str, trickler: Trickler, seconds: float) -> Counter:
    """The hostile owner: endpoints up to the cap and one more at the trickling server, then for `seconds` test
    events and resends (ten of each a second, against a limit of ten a minute), and short speech requests one at
    a time (each success a `job.succeeded` to every endpoint). Returns how each kind of request was answered."""
    headers = {"Authorization": f"Bearer {key}"}
    made = await asyncio.gather(*(http.post("/api/webhooks", headers=headers, json={
        "url": f"{trickler.url}/{n}", "events": ["job.succeeded", "job.failed"]}) for n in range(11)))
    answers = Counter(f"create {r.status_code}" for r in made)
    endpoints = [r.json()["id"] for r in made if r.status_code == 201]
    until = time.monotonic() + seconds

    async def pester() -> None:
        sent = 0
        while time.monotonic() < until:
            sent += 1
            test = await http.post(f"/api/webhooks/{endpoints[sent % len(endpoints)]}/test", headers=headers)
            answers[f"test {test.status_code}"] += 1
            delivery = test.json()["id"] if test.status_code == 202 else "msg_unknown"
            again = await http.post(f"/api/webhooks/deliveries/{delivery}/resend", headers=headers)
            answers[f"resend {again.status_code}"] += 1
            await asyncio.sleep(0.1)  # ~20 requests/s: far over the webhook limit; the request flood is phase one's

    async def speak() -> None:
        """Short texts, twice a second at most: the deliveries they cause are the point, not the speech."""
        spoken_count = 0
        while time.monotonic() < until:
            spoken_count += 1
            spoken = await http.post("/v1/audio/speech", headers=headers, json={
                "model": "tts-1", "voice": VOICE, "input": f"Hook {spoken_count}.", "response_format": "wav"})
            answers[f"speech {spoken.status_code}"] += 1
            await asyncio.sleep(0.5)

    await asyncio.gather(pester(), speak())
    return answers


async def peak_open(trickler: Trickler, until: asyncio.Event) -> int:
    """The most connections the trickling server held at once while `until` is unset."""
    peak = 0
    while not until.is_set():
        peak = max(peak, trickler.open_now)
        await asyncio.sleep(0.1)
    return peak


def print_figures(idle: dict[str, list[float]], loaded: dict[str, list[float]], column: str) -> None:
    """Health, voice list and speech: idle, loaded and the target of each."""
    print(f"{'':28}{'idle':>10}{column:>10}   target")
    for kind, fraction, target in (("health", .99, "p99 < 50 ms"), ("voices", .99, "p99 < 100 ms"),
                                   ("speech", .50, "p50 <= 2x idle")):
        before, during = percentile(idle[kind], fraction), percentile(loaded[kind], fraction)
        label = {"health": "/health/live p99", "voices": "second key, voice list p99",
                 "speech": "second key, speech p50"}[kind]
        print(f"{label:<28}{before * 1000:8.1f}ms{during * 1000:8.1f}ms   {target}"
              + (f" (x{during / before:.2f})" if kind == "speech" and before else ""))


def resident(process: psutil.Process) -> int:
    """Resident memory of the web server and every process it runs (Granian's workers)."""
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


def paced_samples(base: str, key: str, seconds: float) -> dict[str, list[float]]:
    """The second key's timings, taken from a process of its own, as another client would: sharing the flood's
    event loop would time the flood's own client (220 responses parsed in one loop) as much as the server."""

    async def run() -> dict[str, list[float]]:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            client = PacedClient(http, key)
            await client.run(seconds)
            return client.samples

    return asyncio.run(run())


async def measure(base: str, flood_key: str, paced_key: str, hostile_key: str, args: argparse.Namespace,
                  web: psutil.Process) -> None:
    limits = httpx.Limits(max_connections=args.requests + args.bombs + 20)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=1) as second_client:
        idle = await loop.run_in_executor(second_client, paced_samples, base, paced_key, args.seconds / 2)
        rss_before = resident(web)
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
            loaded_samples = loop.run_in_executor(second_client, paced_samples, base, paced_key, args.seconds)
            await asyncio.sleep(0.5)  # the second client is under way when the flood starts
            statuses = await flood(http, flood_key, args.requests, args.bombs)
            loaded = await loaded_samples
        rss_after = resident(web)
        trickler = Trickler()
        try:
            async with httpx.AsyncClient(base_url=base, timeout=120) as http:
                abused_samples = loop.run_in_executor(second_client, paced_samples, base, paced_key, args.seconds)
                await asyncio.sleep(0.5)
                done = asyncio.Event()
                peak = asyncio.create_task(peak_open(trickler, done))
                abuse = await webhook_abuse(http, hostile_key, trickler, args.seconds)
                abused = await abused_samples
                done.set()
                held = await peak
        finally:
            trickler.stop()
    print(f"LockN flood — {psutil.cpu_count()} CPU(s): one key sends {args.requests} concurrent speech requests and "
          f"{args.bombs} bomb uploads; a second key keeps its pace")
    print_figures(idle, loaded, "flood")
    print("flood answered: " + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items(), key=str)))
    print(f"web resident memory: {rss_before / 2**20:.0f} MB → {rss_after / 2**20:.0f} MB "
          f"({(rss_after - rss_before) / 2**20:+.0f} MB; target < 100 MB)")
    print("\nwebhook abuse — a third owner: 11 endpoints at a trickling server (a header byte every 2–4 s), test "
          "events and resends 10/s each, short speech one request at a time; the second key keeps its pace")
    print_figures(idle, abused, "abuse")
    print("abuse answered: " + ", ".join(f"{kind}: {count}" for kind, count in sorted(abuse.items())))
    print(f"trickling server: {len(trickler.opened)} delivery attempts, at most {held} held at once "
          "(by the webhook worker; the speech worker held none)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--bombs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the second key keeps its pace")
    parser.add_argument("--smoke", action="store_true", help="a few seconds with tiny numbers: proves the bench "
                                                             "still runs (tests/test_benches.py)")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.bombs, args.seconds = 8, 2, 3.0
    with local_stack(webhook_worker=True) as stack:
        from backend.core.settings import get_settings
        from backend.services.keys.service import KeySpec, RateLimit, build_key_service

        service = build_key_service(get_settings())
        paced = service.create("bench-paced", KeySpec("paced", rate_limit=RateLimit(100_000, 60)))[1]
        hostile = service.create("bench-hostile", KeySpec("hostile", rate_limit=RateLimit(100_000, 60), scopes=(
            "tts:read", "tts:write", "keys:read", "keys:write")))[1]
        service.close()
        web = psutil.Process(next(child.pid for name, child in stack.supervisor.children if name == "api"))
        asyncio.run(measure(stack.base_url, stack.key, paced, hostile, args, web))


if __name__ == "__main__":
    main()
