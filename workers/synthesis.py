"""Running one synthesis job inside a worker: engine → PCM → encoded file → job row.

Progress is real: text is spoken sentence by sentence and the job row records
the share of characters done after each one. The audio file is written to a
temporary name and renamed, so a crash never leaves a half-written file behind
a `succeeded` row. A job that already succeeded is not run again when its
message is redelivered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import redis
from sqlmodel import Session

from backend.db import get_engine
from backend.models import Job, utcnow
from backend.redis_client import get_binary_redis
from backend.services.usage import UsageRecorder
from backend.settings import get_settings
from workers.audio import FORMATS, encode
from workers.audio_stream import publish_chunk, publish_end, publish_spoken, reset_stream
from workers.engines import engine_class
from workers.engines.base import Engine, ReferenceVoice, SynthesisError, SynthesisOptions, split_sentences

#: Engines loaded in this worker process (by `load_engines`, once per process).
LOADED: dict[str, Engine] = {}
ProgressReporter = Callable[[dict], None]
#: A job whose worker died this many times (its message redelivered each time) is failed, not retried.
MAX_ATTEMPTS = 3
#: Minimum seconds between two progress writes, so long texts do not hammer the database.
PROGRESS_INTERVAL_S = 0.5


@lru_cache(maxsize=1)
def usage_recorder() -> UsageRecorder:
    """Audio seconds are known only here; they reach the key's usage through the same batched recorder."""
    return UsageRecorder(get_engine())


def load_engines(names: list[str]) -> dict[str, Engine]:
    """Instantiate and load each named engine once; engines that cannot run here are skipped with a reason."""
    for name in names:
        if name in LOADED:
            continue
        cls = engine_class(name)
        if (reason := cls.available()) is not None:
            print(f"LockN worker: engine {name} not loaded: {reason}", flush=True)
            continue
        engine = cls()
        engine.load()
        LOADED[name] = engine
    return LOADED


def _update(job_id: str, **fields: object) -> Job:
    with Session(get_engine(), expire_on_commit=False) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise SynthesisError(f"job {job_id} does not exist")
        for name, value in fields.items():
            setattr(job, name, value)
        session.add(job)
        session.commit()
        return job


def run_job(job_id: str, report: ProgressReporter = lambda _meta: None) -> dict:
    """Run the job to `succeeded` or raise; `report` receives each progress update (Celery state)."""
    with Session(get_engine()) as session:
        job = session.get(Job, job_id)
    if job is None:
        raise SynthesisError(f"job {job_id} does not exist")
    if job.status == "succeeded":
        return {"job_id": job.id, "status": "succeeded", "redelivered": True}
    if job.status == "failed":  # cancelled while it waited in the queue, or reaped
        return {"job_id": job.id, "status": "failed", "error": job.error}
    if job.attempts >= MAX_ATTEMPTS:  # it took its worker down every time: stop handing it out
        raise SynthesisError(f"this job stopped its worker {job.attempts} times and was given up; "
                             "try a shorter text or another voice")
    job = _update(job_id, status="running", started_at=utcnow(), attempts=job.attempts + 1, progress=0.0,
                  chars_done=0, error=None)
    _publish(reset_stream, job_id)  # a redelivered job starts its live audio over
    engine = load_engines(get_settings().engine_names).get(job.engine)
    if engine is None:
        raise SynthesisError(f"this worker has no {job.engine} engine loaded")
    voice = reference_voice(job) if job.voice_id.startswith("voice_") else job.voice_id
    started = time.perf_counter()
    pcm = _speak(job, engine, voice, report)
    engine_time = time.perf_counter() - started
    rate = engine.describe().sample_rate
    path = _store(job, encode(pcm, rate, job.format))
    duration = round(len(pcm) / rate, 3)
    _update(job_id, status="succeeded", progress=100.0, chars_done=job.text_chars, audio_path=str(path),
            audio_bytes=path.stat().st_size, duration_s=duration, engine_time_s=round(engine_time, 3),
            finished_at=utcnow())
    _publish(publish_end, job_id)
    if job.key_id:
        usage_recorder().record(job.key_id, audio_seconds=duration)
    report({"status": "succeeded", "progress": 100.0})
    return {"job_id": job.id, "status": "succeeded", "duration_s": duration}


class JobCancelled(Exception):
    """The owner cancelled the job: stop, leave the row as the owner left it."""


def _cancelled(job_id: str) -> bool:
    with Session(get_engine()) as session:
        job = session.get(Job, job_id)
    return job is None or job.status == "failed"


def reference_voice(job: Job) -> ReferenceVoice:
    """The job's cloned voice: its stored clip at the engine's rate, and its transcript."""
    from backend.services.voices import VoiceNotFound, get_cloned_voice, reference_path
    from workers.audio import decode

    try:
        row = get_cloned_voice(job.owner, job.voice_id)
        audio, _ = decode(reference_path(row.id).read_bytes(), target_rate=LOADED[job.engine].describe().sample_rate)
    except (VoiceNotFound, FileNotFoundError):
        raise SynthesisError(f"the cloned voice {job.voice_id} no longer exists") from None
    return ReferenceVoice(audio=audio, transcript=row.transcript)


def _publish(publisher: Callable[..., None], *args: object) -> None:
    """Live audio is a bonus for streaming clients: a Redis hiccup must not fail the job."""
    try:
        publisher(get_binary_redis(), *args)
    except redis.RedisError:
        pass


def _speak(job: Job, engine: Engine, voice: str | ReferenceVoice, report: ProgressReporter) -> np.ndarray:
    sentences = split_sentences(job.text) or [job.text]
    rate = engine.describe().sample_rate
    chunks: list[np.ndarray] = []
    done, last_write = 0, 0.0
    for index, sentence in enumerate(sentences):
        if index and _cancelled(job.id):  # before the first, `run_job` has just seen the job alive
            raise JobCancelled(job.id)
        spoken = list(engine.synthesize(sentence, voice, SynthesisOptions(speed=job.speed)))
        chunks += spoken
        if spoken:
            _publish(publish_chunk, job.id, np.concatenate(spoken), rate)
        done += len(sentence)
        progress = round(100.0 * min(done, job.text_chars) / job.text_chars, 1)
        report({"status": "running", "progress": progress, "chars_done": done})
        last = index == len(sentences) - 1  # its progress is not written: the `succeeded` row follows at once
        if time.monotonic() - last_write >= PROGRESS_INTERVAL_S and not last:
            _update(job.id, progress=min(progress, 99.0), chars_done=done)
            last_write = time.monotonic()
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if pcm.size == 0:
        raise SynthesisError("the engine produced no audio for this text")
    _publish(publish_spoken, job.id)
    return pcm


def _store(job: Job, data: bytes) -> Path:
    folder = get_settings().audio_dir
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{job.id}.{FORMATS[job.format].extension}"
    partial = final.with_name(final.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, final)
    return final


def fail_job(job_id: str, message: str) -> None:
    """Mark the job failed with a message a person can act on (and tell streaming readers)."""
    try:
        _update(job_id, status="failed", error=message[:500], finished_at=utcnow())
    except SynthesisError:
        pass
    _publish(publish_end, job_id, message[:500])
