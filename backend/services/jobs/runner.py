"""Running one synthesis job inside a worker: engine → PCM → encoded file → job row.

The worker's task (`workers/tasks.py`) hands this service the job id and the engines
its process has loaded; this module speaks and stores (progress, cancellation between sentences, the file),
and moves the job from state to state only through `lifecycle` (claiming it, succeeding, failing: each with
what follows it — usage, webhooks, a batch's next line). Progress is real: text is spoken sentence by
sentence and the job row records the share of characters done after each one. The audio file is written to a
temporary name and renamed, so a crash never leaves a half-written file behind
a `succeeded` row. A job that already succeeded is not run again when its
message is redelivered.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from sqlmodel import Session, col, select

from backend.core.db import get_engine
from backend.core.metrics import FIRST_AUDIO
from backend.core.models import Job
from backend.core.settings import get_settings
from backend.core.request_context import request_id_scope
from backend.media.captions import captions_document
from backend.media.codecs import FORMATS, encode, limit_peak
from backend.media.engine import (
    NO_AUDIO_ERROR, Engine, ReferenceVoice, SynthesisError, SynthesisOptions, split_sentences,
)
from backend.media.live_publisher import live_publisher
from backend.media.tempo import change_tempo
from backend.media.live_stream import publish_chunk, publish_progress, publish_sentence, publish_spoken, reset_stream
from backend.services.jobs import lifecycle
from backend.services.jobs.lifecycle import JobCancelled
from backend.services.jobs.records import update_job
from backend.services.voices.service import CLONED_PREFIX, reference_voice

#: What the worker's task catches: a job that cannot be spoken (failed for good) and a job its owner cancelled.
__all__ = ["JobCancelled", "SynthesisError", "run_job", "sentence_audio", "sentence_pieces", "yield_to_interactive"]
#: Minimum seconds between two progress writes, so long texts do not hammer the database.
PROGRESS_INTERVAL_S = 0.5
#: How often a batch line waiting for interactive jobs to end looks again, and for how long it waits at most.
BATCH_YIELD_POLL_S = 0.05
BATCH_YIELD_MAX_S = 30.0


def run_job(job_id: str, engines: Mapping[str, Engine], redelivered: bool = False,
            failed: Mapping[str, str] | None = None) -> dict:
    """Run the job with one of `engines` (by the job's engine name) to `succeeded`, or raise.

    Progress is recorded on the job row as sentences are spoken. `redelivered`: the broker handed
    this message out before (its worker died), so a `running` job is taken over. `failed`: engines this worker
    could not load → why (the job's error then says where to read it)."""
    job = lifecycle.start(job_id, redelivered)
    if not isinstance(job, Job):
        return job  # nothing to run: why, for the task's result
    with request_id_scope(job.request_id):  # what is logged about the job carries the id of its request
        return _run_claimed(job, engines, failed or {})


def _run_claimed(job: Job, engines: Mapping[str, Engine], failed: Mapping[str, str]) -> dict:
    """Speak, store and record a job this worker has claimed."""
    job_id = job.id
    if job.attempts > 1:
        live_publisher.publish(reset_stream, job_id)  # a redelivered job starts its live audio over
    engine = engines.get(job.engine)
    if engine is None:
        if job.engine in failed:  # the reason itself (paths, driver messages) is for the operator, not the client
            raise SynthesisError(f"the {job.engine} engine failed to start on this worker; the dashboard's status "
                                 "card and the worker's log say why")
        raise SynthesisError(f"this worker has no {job.engine} engine loaded")
    rate = engine.sample_rate(job.voice_id)
    voice = reference_voice(job.owner, job.voice_id, rate) if job.voice_id.startswith(CLONED_PREFIX) \
        else job.voice_id
    started = time.perf_counter()
    pcm, spoken = _speak(job, engine, voice)
    engine_time = time.perf_counter() - started
    path = _store(job, encode(pcm, rate, job.format))
    duration = round(len(pcm) / rate, 3)
    captions = captions_document(spoken, rate) if job.captions_requested else None
    try:
        lifecycle.succeed(job, progress=100.0, chars_done=job.text_chars, audio_path=str(path),
                          audio_bytes=path.stat().st_size, duration_s=duration, engine_time_s=round(engine_time, 3),
                          captions=captions)
    except JobCancelled:
        path.unlink(missing_ok=True)  # cancelled in its last moments: no file without a row
        raise
    return {"job_id": job.id, "status": "succeeded", "duration_s": duration}


def yield_to_interactive(max_wait_s: float = BATCH_YIELD_MAX_S) -> None:
    """A batch line waits, before each of its sentences, while an interactive job (the Studio's, /v1's, /api's)
    is running anywhere: batch lines get the machines' spare time, not a share of their busy time. (Not while one
    is only queued: on a worker that takes both kinds, the batch line may hold the slot that job waits for.)
    Measured on 2 cores: Piper's interactive requests took 2.3x as long beside a batch line even with the batch
    worker at nice 10 (both engines' thread pools contend). After `max_wait_s` the sentence runs anyway, so
    steady interactive traffic slows a batch but cannot stop it."""
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        with Session(get_engine()) as session:
            busy = session.exec(select(Job.id).where(col(Job.batch_id).is_(None), Job.status == "running")
                                .limit(1)).first()
        if busy is None:
            return
        time.sleep(BATCH_YIELD_POLL_S)


def sentence_pieces(engine: Engine, sentence: str, voice: str | ReferenceVoice,
                    options: SynthesisOptions) -> Iterator[np.ndarray]:
    """One sentence spoken at `options.speed`, piece by piece as the engine yields them (a streaming engine
    yields every few codec frames, so a listener hears the sentence's start before its end is made).

    At the voice's natural rate, or when the engine speaks `speed` itself (`supports_speed`), pieces pass
    through as they come. Otherwise the tempo change (`backend/media/tempo.py`, same pitch) needs the whole
    sentence: it is gathered, changed, and yielded as one piece."""
    if engine.describe().supports_speed or options.speed == 1.0:
        yield from engine.synthesize(sentence, voice, options)
        return
    spoken = list(engine.synthesize(sentence, voice, dataclasses.replace(options, speed=1.0)))
    yield change_tempo(np.concatenate(spoken) if spoken else np.zeros(0, np.float32), options.speed)


def sentence_audio(engine: Engine, sentence: str, voice: str | ReferenceVoice, options: SynthesisOptions) -> np.ndarray:
    """One sentence's whole audio at `options.speed` (benches and checks that need it at once)."""
    pieces = [piece for piece in sentence_pieces(engine, sentence, voice, options) if piece.size]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


class _Progress:
    """Writes a job's progress at most every PROGRESS_INTERVAL_S; each write also answers "is the job still
    wanted?" (a cancelled job's row is no longer `running`) and enforces the job's time limit, which holds on
    every worker pool (Celery's own limits exist only in prefork pools, not in a GPU worker's threads)."""

    def __init__(self, job: Job) -> None:
        self.job, self.started, self.last_write = job, time.monotonic(), 0.0
        self.deadline = self.started + get_settings().job_time_limit_s

    def check(self, chars_done: int, mid_sentence: bool = False) -> None:
        """After a sentence: write if the interval has passed since the last write. Inside one (between the
        pieces of a streaming engine): only once the job has run that long, so a short job writes nothing more."""
        now = time.monotonic()
        if now - self.last_write < PROGRESS_INTERVAL_S or (mid_sentence and now - self.started < PROGRESS_INTERVAL_S):
            return
        if time.monotonic() > self.deadline:
            raise SynthesisError("the job took longer than the time limit and was stopped")
        progress = min(round(100.0 * chars_done / max(self.job.text_chars, 1), 1), 99.0)
        chars_done = min(chars_done, self.job.text_chars)
        if not update_job(self.job.id, only_while_running=True, progress=progress, chars_done=chars_done):
            raise JobCancelled(self.job.id)
        live_publisher.publish(publish_progress, self.job.id, progress, chars_done)
        self.last_write = time.monotonic()


def _speak(job: Job, engine: Engine, voice: str | ReferenceVoice) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """The job's audio, and each sentence with how many samples it took (what captions are timed by).

    Each piece goes to the live stream as soon as the engine yields it; progress (and cancellation) is looked
    at between pieces, never after the last one: the `succeeded` row follows at once."""
    started = time.perf_counter()
    sentences = split_sentences(job.text) or [job.text]
    rate = engine.sample_rate(job.voice_id)
    options = SynthesisOptions(speed=job.speed, instructions=job.instructions)
    chunks: list[np.ndarray] = []
    spoken_sentences: list[tuple[str, int]] = []
    progress, done = _Progress(job), 0
    for index, sentence in enumerate(sentences):
        if job.batch_id is not None:
            yield_to_interactive()
        samples = 0
        pieces = sentence_pieces(engine, sentence, voice, options)
        try:
            for piece in pieces:
                if not piece.size:
                    continue
                # Limited here, once: the live stream and the stored file carry the very same samples.
                if not chunks:
                    FIRST_AUDIO.labels(job.engine).observe(time.perf_counter() - started)
                chunks.append(limit_peak(piece))
                samples += len(piece)
                live_publisher.publish(publish_chunk, job.id, chunks[-1], rate)
                progress.check(done, mid_sentence=True)
        finally:
            pieces.close()  # a cancelled job leaves its engine's batch at once
        spoken_sentences.append((sentence, samples))
        if samples:  # a sentence that gave no audio has no place in it (and no cue, as in captions)
            live_publisher.publish(publish_sentence, job.id, sentence, samples)
        done += len(sentence)
        if index < len(sentences) - 1:
            progress.check(done)
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if pcm.size == 0:
        raise SynthesisError(NO_AUDIO_ERROR)
    live_publisher.publish(publish_spoken, job.id)
    return pcm, spoken_sentences


def _store(job: Job, data: bytes) -> Path:
    folder = get_settings().audio_dir
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{job.id}.{FORMATS[job.format].extension}"
    partial = final.with_name(final.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, final)
    return final
