"""A heavy client cannot freeze the web tier: requests waiting on a worker hold no thread.

Every sync route of the app (health included) runs on one pool of 40 threads. A speech request that parked
a thread until its worker finished let one key starve everything else (issue 16, finding 1); now waiting
is asynchronous end to end, so the pool stays free however many clients wait for audio.
"""

from __future__ import annotations

import asyncio

import anyio.to_thread
import httpx
from sqlmodel import Session, func, select

from backend.api import build_api
from backend.core.db import get_engine
from backend.core.models import Job
from backend.services.keys.service import KeySpec, RateLimit
from tests.conftest import run_async

CLIENTS = 48  # more than the thread pool's 40 (and within a key's most concurrent jobs, 100)
VOICE = "en_US-joe-medium"


def job_count() -> int:
    with Session(get_engine()) as session:
        return session.exec(select(func.count()).select_from(Job)).one()


def test_clients_waiting_for_audio_hold_no_thread_and_health_answers(worker, key_service) -> None:
    key = key_service.create("auth0|flood", KeySpec("flood", rate_limit=RateLimit(10_000, 60),
                                                    max_concurrent_jobs=CLIENTS))[1]
    headers = {"Authorization": f"Bearer {key}"}

    async def flood() -> tuple[int, int, int, list[int]]:
        transport = httpx.ASGITransport(app=build_api())
        async with httpx.AsyncClient(transport=transport, base_url="http://lockn.test", timeout=300) as http:
            requests = [asyncio.create_task(http.post("/v1/audio/speech", headers=headers, json={
                "model": "tts-1", "voice": VOICE, "input": f"Waiting client number {n} wants its audio.",
                "response_format": "wav" if n % 2 else "flac"})) for n in range(CLIENTS)]
            deadline = asyncio.get_running_loop().time() + 120
            while await asyncio.to_thread(job_count) < CLIENTS:  # every request has queued its job and waits
                assert asyncio.get_running_loop().time() < deadline, "the requests never all queued their jobs"
                assert not any(request.done() and request.result().status_code != 200 for request in requests), \
                    [request.result().text for request in requests if request.done()][:1]
                await asyncio.sleep(0.05)
            threads_held = anyio.to_thread.current_default_thread_limiter().borrowed_tokens
            live = await http.get("/health/live")
            still_waiting = sum(not request.done() for request in requests)
            answers = await asyncio.gather(*requests)
        return threads_held, live.status_code, still_waiting, [answer.status_code for answer in answers]

    threads_held, live, still_waiting, statuses = run_async(flood())
    assert still_waiting >= CLIENTS // 2, "the flood must still be waiting when health is asked"
    assert threads_held <= 2, f"{threads_held} threads held by clients waiting on the worker"
    assert live == 200
    assert statuses == [200] * CLIENTS
