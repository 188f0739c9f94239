"""What the serving tests of every batched GPU engine share (`test_fish_serving.py`, `test_qwen3_serving.py`):
stepping a decoder's streams to their end, speaking from several job threads at once, cancelling one of them, and
four jobs through the real queue on one GPU worker. Importable without the project's conftest (what needs the
database or the broker is imported inside the function that uses it), so the lease's GPU-only tests use it too.
Each engine's test file keeps what is its own (the package's codes, its decoder's cache)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backend.media.engine import SynthesisOptions


def run_to_end(decoder: Any, streams: list, joining: dict[int, Any] | None = None,
               start: Callable[[Any], Any] = lambda stream: stream) -> dict:
    """Step `streams` together, as the batcher does (releasing each as it finishes), until all have finished;
    `joining`: {step number: what `start` makes a stream of (a prefilled stream, by default)} added at that step.
    → each stream's audio pieces."""
    pieces: dict = {stream: [] for stream in streams}
    active, step = list(streams), 0
    while active or joining:
        if joining and step in joining:
            active.append(start(joining.pop(step)))
            pieces[active[-1]] = []
        for stream, (chunks, finished) in zip(list(active), decoder.step(active)):
            pieces[stream] += chunks
            if finished:
                active.remove(stream)
                decoder.release(stream)
        step += 1
    return pieces


def speak_in_threads(engine: Any, voice: str, texts: tuple[str, ...],
                     close_after: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Each text spoken by `engine.synthesize` in `voice`, in a thread of its own, as a GPU worker's job threads
    do; `close_after`: {text: pieces} after which that caller stops reading (its job was cancelled)."""
    results: dict[str, np.ndarray] = {}
    start = threading.Barrier(len(texts))

    def speak(text: str) -> None:
        start.wait()
        pieces = []
        stream = engine.synthesize(text, voice, SynthesisOptions())
        for piece in stream:
            pieces.append(piece)
            if close_after and len(pieces) == close_after.get(text):
                stream.close()
                break
        results[text] = np.concatenate(pieces)

    threads = [threading.Thread(target=speak, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def assert_cancelling_one_leaves_the_others(engine: Any, batcher: Any, voice: str, texts: tuple[str, ...]) -> None:
    """Three streams decoded together, the second cancelled after its first piece: it stops early, the other two
    are heard exactly as alone, and the batch is empty afterwards."""
    alone = {text: np.concatenate(list(engine.synthesize(text, voice))) for text in texts}
    batcher.peak_streams = 0
    heard = speak_in_threads(engine, voice, texts, close_after={texts[1]: 1})
    assert batcher.peak_streams >= 2, "the streams were decoded together"
    assert heard[texts[1]].size < alone[texts[1]].size, "the cancelled stream stopped early"
    for text in (texts[0], texts[2]):
        assert np.allclose(heard[text], alone[text], atol=1e-5), text
    deadline = time.monotonic() + 10
    while batcher.active_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batcher.active_streams == 0, "the cancelled stream left the batch"


def assert_warms_up(engine_name: str, timeout_s: float = 120) -> None:
    """The worker's heartbeat names `engine_name` and ends up saying it is no longer `warming` (it has loaded
    the model and spoken its warm-up sentence)."""
    from backend.core.redis_client import get_redis
    from backend.queue import heartbeat

    seen: list[bool] = []
    deadline = time.monotonic() + timeout_s
    while not seen or seen[-1]:
        assert time.monotonic() < deadline, f"{engine_name} never finished warming up"
        engines = [e for w in heartbeat.live_workers(get_redis()) for e in w.engines if e["name"] == engine_name]
        if engines:
            seen.append(bool(engines[0].get("warming")))
        time.sleep(0.05)


def run_four_jobs_on_one_gpu_worker(engine_name: str, voice: str, settings: dict[str, str],
                                    monkeypatch: Any) -> None:
    """LOCKN_GPU_MAX_STREAMS=4 and `settings` (the engine's checkpoint, device, length): one worker process of
    the `gpu` queue, four job threads, one model decoding them together; every job succeeds, and all four were
    running before the first one finished. (Needs the `embedded_broker` and `database` fixtures.)"""
    from sqlmodel import Session

    from backend.core.db import get_engine
    from backend.core.models import Job
    from backend.ops.supervisor import Supervisor, worker_command
    from backend.services.jobs.service import enqueue_synthesis, job_status
    from tests.conftest import reset_caches, wait_for_worker_heartbeat

    for name, value in {**settings, "LOCKN_GPU_MAX_STREAMS": "4"}.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    command = worker_command(queues="gpu")
    assert command[command.index("--pool") + 1] == "threads" and command[command.index("--concurrency") + 1] == "4"
    supervisor = Supervisor()
    supervisor.start("gpu-worker", command, env={**os.environ, "LOCKN_ENGINES": engine_name, "OMP_NUM_THREADS": "1"})
    try:
        wait_for_worker_heartbeat(timeout_s=120)
        assert_warms_up(engine_name)
        text = " ".join(f"Sentence number {n} of this job." for n in range(1, 7))
        owners = [f"auth0|user{n}" for n in range(4)]  # four people, one job each
        jobs = [enqueue_synthesis(owner, text, voice, "wav", captions=True) for owner in owners]
        deadline = time.monotonic() + 300
        while any(job_status(job.id, job.owner).status not in ("succeeded", "failed") for job in jobs):
            assert time.monotonic() < deadline, "the jobs did not finish"
            time.sleep(0.2)
    finally:
        supervisor.stop_all()
    with Session(get_engine()) as session:
        rows = [session.get(Job, job.id) for job in jobs]
    assert [row.status for row in rows] == ["succeeded"] * 4, [row.error for row in rows]
    assert max(row.started_at for row in rows) < min(row.finished_at for row in rows), \
        "four jobs ran at once on one worker"


def checkpoint_settings(prefix: str, checkpoint: Path) -> dict[str, str]:
    """An engine's settings for the queue test: its checkpoint, the CPU, short sentences (`prefix`: FISH, QWEN)."""
    return {f"LOCKN_{prefix}_CHECKPOINT_DIR": str(checkpoint), f"LOCKN_{prefix}_DEVICE": "cpu",
            f"LOCKN_{prefix}_MAX_NEW_TOKENS": "24"}


def record_step_shapes(monkeypatch: Any) -> list[tuple[int, int]]:
    """From now on (for the test), every frame step called notes its (rows, span of cache columns), in order:
    which graphs a decode would record or replay."""
    from workers.engines.fast_step import FastStep

    shapes: list[tuple[int, int]] = []
    original = FastStep.__call__

    def recording(self: FastStep, *args: Any) -> Any:
        shapes.append((int(args[0].shape[0]), args[-1]))
        return original(self, *args)

    monkeypatch.setattr(FastStep, "__call__", recording)
    return shapes
