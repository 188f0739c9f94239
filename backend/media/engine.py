"""The engine contract: (text, voice, options) → PCM chunks, and how an engine describes itself.

Engines (`workers/engines/*`) implement `Engine`; the job runner
(`backend/services/jobs/runner.py`) drives any `Engine` it is handed. Engines know
nothing of Celery, HTTP or the database, and read no global settings: they are
built with their configuration (see `workers/engine_loader.py`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

#: Sentence boundaries for engines that synthesize sentence by sentence (first audio early).
_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+|\n+")
#: The speaking rates a request may ask for (OpenAI's own range); 1.0 is the voice's natural rate.
MIN_SPEED, MAX_SPEED = 0.25, 4.0
#: The longest spoken-style instruction a request may carry (a direction, not a second text).
MAX_INSTRUCTIONS_CHARS = 1000


class SynthesisError(Exception):
    """A job that can never succeed as asked (unknown voice, empty text…): fail it, never retry it."""


#: The error of a job whose text gave no audio at all (a script or symbols the voice cannot read). It is the
#: text's doing, not the platform's: a client waiting for the audio gets a 4xx `unspeakable_text`, never a 500.
NO_AUDIO_ERROR = "the voice produced no audio for this text: it may be in a script or language the voice cannot read"


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    name: str
    engine: str
    language: str
    kind: str = "builtin"
    #: What identifies this voice's weights where they can be replaced under one id (a Piper voice's files: a
    #: digest of them): it joins the cache address, so a replaced voice never answers with the old one's audio.
    #: Empty for voices fixed by the engine's version.
    revision: str = ""


@dataclass(frozen=True)
class ReferenceVoice:
    """A cloned voice: its reference clip (mono float at the engine's rate) and that clip's transcript."""

    audio: np.ndarray = field(repr=False)
    transcript: str


@dataclass(frozen=True)
class SynthesisOptions:
    """How to speak. `instructions` is a spoken-style direction ("calm, slower, a little amused"): engines
    whose `EngineInfo.supports_instructions` is true follow it, the others speak as they always do (as
    OpenAI's `tts-1` ignores it)."""

    #: Spoken by engines whose `EngineInfo.supports_speed` is true; for the others (all of today's) the job
    #: runner asks for 1.0 and changes the audio's tempo afterwards, so speed means the same on every engine.
    speed: float = 1.0
    instructions: str = ""


@dataclass(frozen=True)
class EngineInfo:
    name: str
    sample_rate: int
    supports_cloning: bool
    device: str
    version: str
    supports_instructions: bool = False
    #: Whether the engine speaks `options.speed` itself; otherwise the job runner changes the tempo afterwards.
    supports_speed: bool = False
    #: Sentences this engine speaks together in one worker process: a GPU engine's batch, `LOCKN_GPU_MAX_STREAMS`
    #: (`streams_asked`), or fewer where the card cannot hold their cache rows; 1 for an engine that speaks one at
    #: a time (a CPU worker runs more of them side by side as processes).
    streams: int = 1
    streams_asked: int = 1
    #: Voices this engine was given but could not load (a damaged file among a folder of sound ones) → why: the
    #: others still speak; these are left out of `voices()` and named on the engine's status card.
    voice_failures: dict[str, str] = field(default_factory=dict)
    #: The `VoiceInfo.revision` of the files each of those failed on: once a voice's files are replaced (fixed),
    #: a failure seen on the old ones no longer holds it back.
    voice_failure_revisions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class Engine(ABC):
    """One synthesis engine. `load()` runs once per worker process; `synthesize` once per sentence."""

    name: str

    def unavailable_reason(self) -> str | None:
        """None when this engine can run here; otherwise why not (cheap: no model is loaded)."""
        return None

    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def describe(self) -> EngineInfo: ...

    @abstractmethod
    def voices(self) -> list[VoiceInfo]: ...

    def voice_sources(self) -> Hashable:
        """What this engine's voices are read from, as a value that changes when a voice is added, replaced or
        removed (cheap: no model is read). A worker compares it between beats to offer new voices without a
        restart; the default (an engine whose voices are fixed by its checkpoint) never changes."""
        return None

    def refresh(self) -> bool:
        """Take in the voices added, replaced or removed since `load()` (see `voice_sources`); True when what the
        engine speaks changed. Runs in a worker's pool process before each job, so it must be cheap when nothing
        changed."""
        return False

    def sample_rate(self, voice: str) -> int:
        """The rate of the audio `synthesize` yields for the voice with id `voice`. Engines whose voices differ
        (each Piper voice has its own) answer per voice; the others, and any id they do not know (a cloned
        voice's), answer `describe().sample_rate`."""
        return self.describe().sample_rate

    def warm_up(self) -> None:
        """Speak one short sentence with the first voice, so a worker's first job does not pay for what a first
        call costs (CUDA kernels chosen, compiled decoding built). A GPU worker runs this before it says ready."""
        voices = self.voices()
        if voices:
            for _ in self.synthesize("Ready.", voices[0].id):
                pass

    @abstractmethod
    def synthesize(self, text: str, voice: str | ReferenceVoice,
                   options: SynthesisOptions = SynthesisOptions()) -> Iterator[np.ndarray]:
        """Yield float32 mono PCM chunks at the voice's `sample_rate`, roughly one per sentence."""


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text) if part and part.strip()]
