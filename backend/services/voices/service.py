"""The voice library: built-in voices (announced by live workers) and each owner's cloned voices.

A cloned voice is a 10–30 s reference clip (after trimming silence) plus its
transcript: zero-shot cloning engines need both. The clip is stored normalised
(mono, 16-bit WAV, steady loudness) under `<data dir>/voices/cloned/`. Every
rejection says what to fix; nothing is stored unless everything is valid.

The Studio checks a dropped clip before the user names it: `stage_clip` keeps the
checked upload in the owner's staging folder under a random token, and
`create_from_staged` turns it into a voice (only that owner's token is found).
A clip never named is deleted by the workers' sweep (`sweep_staged_clips`) after
`LOCKN_STAGED_CLIP_MAX_AGE_S`, with files of uploads that never finished; an owner
keeps at most `MAX_STAGED_PER_OWNER` staged clips, and `LOCKN_MAX_CLONED_VOICES` voices.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import redis
import soundfile as sf
from sqlmodel import Session, col, func, select

from backend.core.db import get_engine, serialize_for
from backend.core.models import ClonedVoice
from backend.core.redis_client import get_redis
from backend.core.settings import get_settings
from backend.media.codecs import AudioDecodeError, AudioTooLong, decode, normalize_loudness
from backend.media.engine import ReferenceVoice, SynthesisError
from backend.queue import heartbeat
from backend.queue.engines import ENGINES
from backend.services.common.ownership import owned_row
from backend.services.accounts.audit import audit_event
from backend.services.common.errors import ServiceUnavailable

#: Ids of cloned voices start with this; built-in voice ids are the engines' own names.
CLONED_PREFIX = "voice_"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MIN_SECONDS, MAX_SECONDS = 10.0, 30.0
#: Longest file decoded at all (silence around the speech is trimmed after decoding); beyond it, refused unread.
MAX_DECODED_SECONDS = 120.0
MAX_TRANSCRIPT_CHARS = 500
MAX_NAME_CHARS = 80
#: The engine a new cloned voice is recorded with (the registry's first that clones); any live cloning engine can
#: speak it (`engine_for_clone`).
CLONING_ENGINE = next(name for name, spec in ENGINES.items() if spec.clones)
#: Why a cloned voice cannot be spoken right now.
NO_CLONING_ENGINE = ("speaking with a cloned voice needs a cloning engine (Fish Speech, or Qwen3-TTS with a Base "
                     "checkpoint), and none is running (README: \"Add a GPU worker\")")
#: Frames quieter than this share of the clip's loudest frame count as silence when trimming.
SILENCE_RATIO = 0.05
FRAME_SECONDS = 0.02


class VoiceRejected(ValueError):
    """An upload that cannot become a voice; `status` is the HTTP status, `field` what to fix, `code` the API's
    error code when it is not about the request's fields."""

    def __init__(self, message: str, field: str, status: int = 422, code: str | None = None) -> None:
        """`code` defaults by `field`: a bad clip is `invalid_audio`, anything else `invalid_request`."""
        super().__init__(message)
        self.field, self.status = field, status
        self.code = code or ("invalid_audio" if field == "audio" else "invalid_request")


class TooManyVoices(VoiceRejected):
    """The owner keeps `LOCKN_MAX_CLONED_VOICES` cloned voices already."""

    def __init__(self, count: int, cap: int) -> None:
        super().__init__(f"you have {count} cloned voices, the most one account may keep ({cap}); delete one to "
                         "make room", "audio", status=409, code="voice_limit_reached")


class VoiceNotFound(LookupError):
    """No such voice among the caller's (built-in voices cannot be deleted)."""


@dataclass(frozen=True)
class VoiceEntry:
    """A voice as the library shows it. `engine` speaks it by default; `engines` are all that can speak it now
    (a built-in voice: its own engine; a cloned voice: every live engine that clones, see `engine_for_clone`)."""

    id: str
    name: str
    engine: str
    language: str
    kind: str
    created_at: datetime | None = None
    engines: tuple[str, ...] = ()
    #: Whether `instructions` steer this voice (its engine says `supports_instructions`; clones: never).
    follows_instructions: bool = False


def _live_workers() -> list[heartbeat.WorkerInfo]:
    try:
        return heartbeat.live_workers(get_redis())
    except redis.RedisError as exc:
        raise ServiceUnavailable("the job queue is unreachable; try again in a moment") from exc


def live_voices() -> dict[str, tuple[str, heartbeat.WorkerInfo]]:
    """Voice id → (engine, a worker serving it), from the workers' heartbeats."""
    voices: dict[str, tuple[str, heartbeat.WorkerInfo]] = {}
    for worker in _live_workers():
        for engine in worker.engines:
            for voice in engine.get("voices", []):
                voices.setdefault(voice["id"], (engine["name"], worker))
    return voices


def live_engines(workers: list[heartbeat.WorkerInfo] | None = None) -> dict[str, dict]:
    """Engine name → its description (version, sample rate, cloning…), from the workers' heartbeats (read now
    unless `workers` already holds them)."""
    return {engine["name"]: engine for worker in (_live_workers() if workers is None else workers)
            for engine in worker.engines}


def unavailable_engines(workers: list[heartbeat.WorkerInfo] | None = None) -> dict[str, str]:
    """Engine name → why a live worker told to run it cannot (its heartbeat says), for engines no live worker
    runs: "no weights: run `… models pull …`" reaches the dashboard and the Studio from the worker's machine."""
    workers = _live_workers() if workers is None else workers
    running = {e["name"] for w in workers for e in w.engines}
    return {name: reason for w in workers for name, reason in w.unavailable.items() if name not in running}


def unavailable_voice_reason(voice: str, workers: list[heartbeat.WorkerInfo] | None = None) -> str | None:
    """Why a built-in voice no worker serves cannot be spoken, when its engine is one a worker cannot run (its
    id starts with the engine's name: `qwen3-aiden`, `fish-default`); None when nothing is known about it."""
    for name, reason in unavailable_engines(workers).items():
        if voice.startswith(name + "-"):
            return f"voice {voice!r} needs the {name} engine, which no worker can run: {reason}"
    return None


def cloning_engines(workers: list[heartbeat.WorkerInfo] | None = None) -> dict[str, dict]:
    """The live engines that can speak a cloned voice (their heartbeat says `supports_cloning`)."""
    return {name: engine for name, engine in live_engines(workers).items() if engine.get("supports_cloning")}


def engine_for_clone(recorded: str, preferred: str | None = None) -> tuple[str, str]:
    """(engine, version) to speak a cloned voice: the one asked for, else the one it was made with, else any
    live cloning engine. Every cloning engine speaks from the same stored clip and transcript, so a clone
    made while only Fish Speech ran is spoken by Qwen3-TTS as well."""
    engines = cloning_engines()
    for name in (preferred, recorded, *sorted(engines)):
        if name in engines:
            return name, engines[name]["version"]
    raise ServiceUnavailable(NO_CLONING_ENGINE)


def builtin_voices(workers: list[heartbeat.WorkerInfo] | None = None) -> list[VoiceEntry]:
    """Voices the live workers announce (the first worker to announce a voice describes it), in a stable order."""
    entries: dict[str, VoiceEntry] = {}
    for worker in _live_workers() if workers is None else workers:
        for engine in worker.engines:
            for info in engine.get("voices", []):
                entries.setdefault(info["id"], VoiceEntry(
                    info["id"], info["name"], engine["name"], info.get("language", "und"), "builtin",
                    engines=(engine["name"],), follows_instructions=bool(engine.get("supports_instructions"))))
    return sorted(entries.values(), key=lambda v: (v.engine, v.name))


def cloned_voices(owner: str, speaking: tuple[str, ...] | None = None) -> list[VoiceEntry]:
    """The owner's cloned voices; `speaking` names the live cloning engines (read from the heartbeats when
    not given; empty when the queue cannot be reached, so the library still lists the owner's clones)."""
    if speaking is None:
        try:
            speaking = tuple(sorted(cloning_engines()))
        except ServiceUnavailable:
            speaking = ()
    with Session(get_engine()) as session:
        rows = session.exec(select(ClonedVoice).where(ClonedVoice.owner == owner)
                            .order_by(col(ClonedVoice.created_at).desc())).all()
    return [_cloned_entry(row, speaking) for row in rows]


def _cloned_entry(row: ClonedVoice, speaking: tuple[str, ...]) -> VoiceEntry:
    engine = row.engine if row.engine in speaking or not speaking else speaking[0]
    return VoiceEntry(row.id, row.name, engine, row.language, "cloned", row.created_at, speaking or (row.engine,))


def list_voices(owner: str | None) -> list[VoiceEntry]:
    """Built-in voices, then the owner's cloned ones (none without an owner), from one read of the heartbeats."""
    workers = _live_workers()
    return builtin_voices(workers) + (cloned_voices(owner, tuple(sorted(cloning_engines(workers)))) if owner else [])


def trim_silence(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Cut leading and trailing silence (frames under SILENCE_RATIO of the loudest frame)."""
    frame = max(1, int(rate * FRAME_SECONDS))
    frames = len(pcm) // frame
    if frames == 0:
        return pcm
    rms = np.sqrt(np.mean(np.square(pcm[: frames * frame].reshape(frames, frame)), axis=1))
    loud = np.flatnonzero(rms > max(rms.max() * SILENCE_RATIO, 1e-4))
    if loud.size == 0:
        return pcm[:0]
    return pcm[loud[0] * frame: (loud[-1] + 1) * frame]


def validate_clip(data: bytes) -> tuple[np.ndarray, int]:
    """The clip as trimmed mono PCM, or a `VoiceRejected` saying what is wrong with it."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise VoiceRejected(f"the file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB",
                            "audio", status=413)
    if not data:
        raise VoiceRejected("the audio file is empty", "audio", status=400)
    try:
        pcm, rate = decode(data, max_seconds=MAX_DECODED_SECONDS)
    except AudioTooLong as exc:
        raise VoiceRejected(f"{exc}: record {MIN_SECONDS:.0f}–{MAX_SECONDS:.0f} s", "audio") from None
    except AudioDecodeError as exc:
        raise VoiceRejected(f"{exc}", "audio", status=400) from None
    speech = trim_silence(pcm, rate)
    seconds = len(speech) / rate
    if seconds < MIN_SECONDS:
        raise VoiceRejected(f"the clip has {seconds:.1f} s of sound after trimming silence; record "
                            f"{MIN_SECONDS:.0f}–{MAX_SECONDS:.0f} s", "audio")
    if seconds > MAX_SECONDS:
        raise VoiceRejected(f"the clip has {seconds:.1f} s of sound after trimming silence; keep it to "
                            f"{MIN_SECONDS:.0f}–{MAX_SECONDS:.0f} s", "audio")
    return speech, rate


def create_cloned_voice(owner: str, name: str, transcript: str, data: bytes, language: str = "en") -> VoiceEntry:
    """Validate everything, then store the normalised clip and the row together (or neither)."""
    name, transcript = name.strip(), transcript.strip()
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise VoiceRejected(f"name must be 1–{MAX_NAME_CHARS} characters", "name")
    if not 1 <= len(transcript) <= MAX_TRANSCRIPT_CHARS:
        raise VoiceRejected(f"transcript must be 1–{MAX_TRANSCRIPT_CHARS} characters: type what the clip says",
                            "transcript")
    with Session(get_engine()) as session:
        _check_voice_cap(session, owner)  # before decoding anything: a full library costs no CPU
    speech, rate = validate_clip(data)
    voice_id = CLONED_PREFIX + secrets.token_hex(8)
    path = reference_path(voice_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    sf.write(buffer, normalize_loudness(speech), rate, format="WAV", subtype="PCM_16")
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(buffer.getvalue())
    row = ClonedVoice(id=voice_id, owner=owner, name=name, engine=CLONING_ENGINE, language=language,
                      transcript=transcript, duration_s=round(len(speech) / rate, 2))
    try:
        with Session(get_engine(), expire_on_commit=False) as session:
            serialize_for(session, "cloned_voices", owner)  # two clones racing for the last place: one gets it
            _check_voice_cap(session, owner)
            session.add(row)
            session.add(audit_event(owner, "voice.cloned", voice_id, name))
            session.commit()
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return _cloned_entry(row, ())


def _check_voice_cap(session: Session, owner: str) -> None:
    cap = get_settings().max_cloned_voices
    count = session.exec(select(func.count()).select_from(ClonedVoice).where(ClonedVoice.owner == owner)).one()
    if count >= cap:
        raise TooManyVoices(count, cap)


def _cloned_root() -> Path:
    return get_settings().data_dir / "voices" / "cloned"


def reference_path(voice_id: str) -> Path:
    return _cloned_root() / f"{voice_id}.wav"


def get_cloned_voice(owner: str, voice_id: str) -> ClonedVoice:
    with Session(get_engine()) as session:
        row = owned_row(session, ClonedVoice, voice_id, owner, VoiceNotFound)
    return row


def delete_cloned_voice(owner: str, voice_id: str) -> None:
    """Delete one of the owner's cloned voices and its clip; built-in or foreign voices are not found."""
    with Session(get_engine()) as session:
        row = owned_row(session, ClonedVoice, voice_id, owner, VoiceNotFound)
        session.delete(row)
        session.add(audit_event(owner, "voice.deleted", voice_id, row.name))
        session.commit()
    reference_path(voice_id).unlink(missing_ok=True)


def reference_voice(owner: str, voice_id: str, sample_rate: int) -> ReferenceVoice:
    """A cloned voice as an engine takes it: the stored clip at the engine's rate, and its transcript."""
    try:
        row = get_cloned_voice(owner, voice_id)
        audio, _ = decode(reference_path(row.id).read_bytes(), target_rate=sample_rate)
    except (VoiceNotFound, FileNotFoundError):
        raise SynthesisError(f"the cloned voice {voice_id} no longer exists") from None
    return ReferenceVoice(audio=audio, transcript=row.transcript)


# ----- staged clips (the Studio checks a clip before the user names it) ------------------------------------

_TOKEN = re.compile(r"^[0-9a-f]{24}$")
#: Staged clips one owner may have at once (several tabs); a new one replaces the oldest beyond this.
MAX_STAGED_PER_OWNER = 4


@dataclass(frozen=True)
class StagedClip:
    """A checked upload waiting to become a voice: `token` finds it again, for its owner only."""

    token: str
    seconds: float
    speech: np.ndarray


def _staging_root() -> Path:
    return get_settings().data_dir / "staging"


def _staged_path(owner: str, token: str) -> Path:
    if not _TOKEN.match(token):
        raise VoiceRejected("Drop a 10–30 second recording first.", "audio")
    folder = hashlib.sha256(owner.encode()).hexdigest()[:24]
    return _staging_root() / folder / f"{token}.clip"


def stage_clip(owner: str, data: bytes) -> StagedClip:
    """Check `data` as a voice clip (`VoiceRejected` says why not) and keep it for `create_from_staged`."""
    speech, rate = validate_clip(data)
    token = secrets.token_hex(12)
    path = _staged_path(owner, token)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)
    for older in _by_age(path.parent.glob("*.clip"))[:-MAX_STAGED_PER_OWNER]:
        older.unlink(missing_ok=True)
    return StagedClip(token, round(len(speech) / rate, 1), speech)


def _by_age(paths: Iterable[Path]) -> list[Path]:
    """`paths` oldest first (a file deleted meanwhile is left out)."""
    dated = []
    for path in paths:
        try:
            dated.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            continue
    return [path for _, path in sorted(dated)]


def sweep_staged_clips(max_age_s: float | None = None) -> int:
    """Delete staged clips nobody made into a voice, and files of uploads that never finished (`*.part`, left by a
    process that died mid-write), older than `LOCKN_STAGED_CLIP_MAX_AGE_S`; how many were deleted.

    Run by the workers' periodic sweep. A clip is as old as its file: the Studio's form for it has long gone."""
    cutoff = time.time() - (get_settings().staged_clip_max_age_s if max_age_s is None else max_age_s)
    leftovers = [*_staging_root().glob("*/*.clip"), *_staging_root().glob("*/*.part"),
                 *_cloned_root().glob("*.part")]
    deleted = 0
    for path in leftovers:
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
        except FileNotFoundError:
            continue  # made into a voice, or swept by another worker, meanwhile
    return deleted


def discard_staged(owner: str, token: str) -> None:
    """Forget a staged clip (replaced by another drop, or made into a voice)."""
    if _TOKEN.match(token):
        _staged_path(owner, token).unlink(missing_ok=True)


def create_from_staged(owner: str, token: str, name: str, transcript: str, language: str = "en") -> VoiceEntry:
    """Make the owner's staged clip a voice (as `create_cloned_voice`), then forget the staged file."""
    path = _staged_path(owner, token)
    if not path.is_file():
        raise VoiceRejected("Drop a 10–30 second recording first.", "audio")
    entry = create_cloned_voice(owner, name, transcript, path.read_bytes(), language)
    path.unlink(missing_ok=True)
    return entry
