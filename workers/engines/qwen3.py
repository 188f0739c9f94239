"""Qwen3-TTS (12 Hz): preset speakers that follow spoken-style instructions, and zero-shot cloning.

Loaded with the package's own `Qwen3TTSModel.from_pretrained` (which registers its config, model and
processor with transformers' Auto classes) from the checkpoint folders it is built with:
- `LOCKN_QWEN_CHECKPOINT_DIR`: a CustomVoice model (its preset speakers become built-in voices and
  `instructions` steer them) or a Base model (cloned voices);
- `LOCKN_QWEN_CLONE_CHECKPOINT_DIR`, optional: a Base model beside a CustomVoice one, for cloned voices.
Which kind a folder holds is read from its `config.json` (`tts_model_type`), so the user only points at what
they downloaded. Device `LOCKN_QWEN_DEVICE` (cuda when present, else cpu); bfloat16 on a GPU, float32 on a CPU.

Serving: the package's `generate` runs a batch from start to end and returns audio at the end. Here each model
has one `StreamBatcher` thread driving `Qwen3StreamDecoder` (`workers/engines/qwen3_stream.py`): up to
`max_streams` sentences (one per job a GPU worker runs at once, `LOCKN_GPU_MAX_STREAMS`) are decoded together a
frame at a time, and each one's audio is yielded every few frames, so first audio arrives after two frames
instead of a whole sentence. Speed: Qwen3-TTS has no speed control; the job runner changes the tempo of what it
yields (`backend/media/tempo.py`), as for Fish Speech.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import json
import threading
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from backend.media.engine import (
    Engine, EngineInfo, ReferenceVoice, SynthesisError, SynthesisOptions, VoiceInfo,
)
from backend.media.model_catalog import QWEN_REQUIRED_FILES, no_weights_reason, qwen_checkpoints
from workers.engines.fast_step import StepMode, step_options
from workers.engines.qwen3_stream import Qwen3StreamDecoder, QwenRequest
from workers.engines.stream_batcher import StreamBatcher
from workers.engines.torch_device import choose_device, default_precision

#: Built-in voice ids are the speaker's name behind this prefix (speaker names are Qwen's own, lowercased).
VOICE_PREFIX = "qwen3-"
#: The released CustomVoice speakers' native languages (Qwen3-TTS model card); others are "multi".
SPEAKER_LANGUAGES = {"vivian": "zh", "serena": "zh", "uncle_fu": "zh", "dylan": "zh", "eric": "zh",
                     "ryan": "en", "aiden": "en", "ono_anna": "ja", "sohee": "ko"}
#: What every Qwen3-TTS 12 Hz folder holds (the text tokenizer's files vary by how it was saved).
REQUIRED_FILES = QWEN_REQUIRED_FILES
#: The speech tokenizer's output rate; read from the loaded model once it is loaded.
DEFAULT_SAMPLE_RATE = 24000


class Qwen3Engine(Engine):
    name = "qwen3"

    def __init__(self, checkpoint_dir: Path | None, clone_checkpoint_dir: Path | None = None,
                 device: str = "auto", max_new_tokens: int = 2048, max_streams: int = 1,
                 greedy: bool = False, models_dir: Path | None = None, step: StepMode = "auto",
                 compile_cache_dir: Path | None = None, precision: Any = None) -> None:
        """`checkpoint_dir` (CustomVoice or Base) and `clone_checkpoint_dir` (Base, beside a CustomVoice one): the
        weights' folders; those not given are found among the models pulled under `models_dir` (the models
        folder, `LOCKN_MODELS_DIR`), when there is one. `device`: cuda, cpu, or auto (cuda when present);
        `max_new_tokens` bounds one sentence's codec frames; `max_streams`: sentences decoded together per model;
        `greedy`: always the likeliest token (tests). `step`: how the decoder's frame step runs (`fast_step`:
        graphs, compiled or eager; `auto`: CUDA graphs on CUDA; built during the warm-up sentence), since eager
        decoding is launch-bound (seen on an H200: RTF 2.3 for one stream of the 1.7B model);
        `compile_cache_dir` keeps compiled kernels between worker starts (TorchInductor's cache). `precision`: the
        models' dtype (`torch_device.default_precision` when None; the tests ask for bfloat16 on a CPU)."""
        if models_dir is not None:
            checkpoint_dir, clone_checkpoint_dir = qwen_checkpoints(checkpoint_dir, clone_checkpoint_dir, models_dir)
        self.folders = [Path(d) for d in (checkpoint_dir, clone_checkpoint_dir) if d is not None]
        self.wanted_device, self.max_new_tokens = device, max_new_tokens
        self.max_streams, self.greedy, self.precision = max_streams, greedy, precision
        self.step, self.compile_cache_dir = step, compile_cache_dir
        self._models: dict[str, Any] = {}  # tts_model_type ("custom_voice", "base") → Qwen3TTSModel
        self.batchers: dict[str, StreamBatcher] = {}  # tts_model_type → the thread that decodes its streams
        self._device = "cpu"
        self._prompts: dict[int, tuple[ReferenceVoice, Any]] = {}  # cloned voices' prompts (`_clone_prompt`)
        self._prompts_lock = threading.Lock()

    # ----- what the folders hold (cheap: config.json only, no model loaded) ---------------------------------

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("qwen_tts") is None:
            return "qwen-tts is not installed (make setup-qwen)"
        if not self.folders:
            return no_weights_reason(self.name, "LOCKN_QWEN_CHECKPOINT_DIR")
        for folder in self.folders:
            missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
            if missing:
                return f"{folder} lacks {', '.join(missing)}"
        kinds = [self._kind(folder) for folder in self.folders]
        if not {"custom_voice", "base"} & set(kinds):
            return f"{', '.join(map(str, self.folders))}: a CustomVoice or Base model is needed (found {kinds})"
        return None

    @cached_property
    def _configs(self) -> dict[Path, dict]:
        return {folder: json.loads((folder / "config.json").read_text()) for folder in self.folders}

    def _kind(self, folder: Path) -> str:
        return str(self._configs[folder].get("tts_model_type") or "")

    def _folder_of(self, kind: str) -> Path | None:
        return next((folder for folder in self.folders if self._kind(folder) == kind), None)

    def voices(self) -> list[VoiceInfo]:
        """One built-in voice per preset speaker of the CustomVoice folder (none without one)."""
        folder = self._folder_of("custom_voice")
        if folder is None:
            return []
        speakers = self._configs[folder].get("talker_config", {}).get("spk_id") or {}
        return [VoiceInfo(id=VOICE_PREFIX + speaker.lower(), name=f"{speaker.replace('_', ' ').title()} (Qwen3-TTS)",
                          engine=self.name, language=SPEAKER_LANGUAGES.get(speaker.lower(), "multi"))
                for speaker in sorted(speakers)]

    def describe(self) -> EngineInfo:
        custom = self._models.get("custom_voice")
        rate = DEFAULT_SAMPLE_RATE
        if self._models:
            rate = int(next(iter(self._models.values())).model.speech_tokenizer.get_output_sample_rate())
        device = self._device if self._models else self.wanted_device
        cloning = self._folder_of("base") is not None
        instructions = self._folder_of("custom_voice") is not None and (
            custom is None or str(custom.model.tts_model_size) != "0b6")  # the 0.6B CustomVoice ignores them
        streams = min((batcher.max_streams for batcher in self.batchers.values()), default=self.max_streams)
        return EngineInfo(self.name, rate, cloning, device, importlib.metadata.version("qwen-tts"), instructions,
                          streams=streams, streams_asked=self.max_streams)

    # ----- loading and speaking ------------------------------------------------------------------------------

    def load(self) -> None:
        qwen3_tts_model = _import_qwen_tts()
        self._device = choose_device(self.wanted_device)
        dtype = self.precision or default_precision(self._device)
        for folder in self.folders:
            model = qwen3_tts_model.from_pretrained(str(folder), dtype=dtype, device_map=self._device)
            # The talker generates codec frames; without its pad id transformers warns on every sentence.
            model.model.talker.generation_config.pad_token_id = model.model.config.talker_config.codec_pad_id
            kind = str(model.model.tts_model_type)
            self._models[kind] = model
            decoder = Qwen3StreamDecoder(model, self.max_new_tokens, greedy=self.greedy, max_streams=self.max_streams)
            decoder.use_step(*step_options(self.step, self._device, self.compile_cache_dir))
            self.batchers[kind] = StreamBatcher(decoder, decoder.max_streams, name=f"qwen3-{kind}")

    def warm_up(self) -> None:
        """One short sentence through each loaded model (a compiled decoder builds its graphs during its first
        one): a preset speaker for the CustomVoice model, and for a Base model a voice cloned from a second of
        faint noise (no transcript: the speaker embedding alone), so the first cloned voice waits for nothing."""
        super().warm_up()
        if "base" in self._models:
            noise = np.random.default_rng(0).normal(0.0, 0.01, self.describe().sample_rate).astype(np.float32)
            for _ in self.synthesize("Ready.", ReferenceVoice(noise, "")):
                pass

    def synthesize(self, text: str, voice: str | ReferenceVoice,
                   options: SynthesisOptions = SynthesisOptions()) -> Iterator[np.ndarray]:
        """One sentence (the job runner splits the text) → its audio, a chunk every few codec frames, decoded
        together with the other streams of the same model."""
        limits = {"max_new_tokens": self.max_new_tokens}
        if isinstance(voice, ReferenceVoice):
            kind, model = "base", self._cloning_model()
            request = QwenRequest(
                generate=lambda: model.generate_voice_clone(text=text, language="Auto",
                                                            voice_clone_prompt=self._clone_prompt(voice), **limits),
                context=lambda: self._reference_codes(voice))
        else:
            kind, model = "custom_voice", self._custom_model()
            speaker = self._speaker(voice)
            request = QwenRequest(generate=lambda: model.generate_custom_voice(
                text=text, speaker=speaker, language="Auto", instruct=options.instructions or None, **limits))
        yield from self.batchers[kind].stream(request)

    def _custom_model(self) -> Any:
        if "custom_voice" not in self._models:
            raise SynthesisError("this Qwen3-TTS worker has no CustomVoice model, so no preset speakers")
        return self._models["custom_voice"]

    def _cloning_model(self) -> Any:
        if "base" not in self._models:
            raise SynthesisError("this Qwen3-TTS worker has no Base model, so it cannot speak cloned voices")
        return self._models["base"]

    def _speaker(self, voice: str) -> str:
        speaker = voice.removeprefix(VOICE_PREFIX)
        if not voice.startswith(VOICE_PREFIX) or speaker not in (self._custom_model().get_supported_speakers() or []):
            raise SynthesisError(f"unknown Qwen3-TTS voice {voice!r}")
        return speaker

    def _clone_prompt(self, voice: ReferenceVoice) -> list:
        """The reference clip as Qwen's clone prompt: with its transcript, in-context (codes + text, closest to
        the speaker); without one, from the speaker embedding alone.

        Made once per voice while its job runs: the runner passes the same `ReferenceVoice` for each of a job's
        sentences, and encoding the clip costs as much as a short sentence. Kept for the last few voices (one
        per stream); the entry holds the voice itself, so its id is never reused while kept."""
        with self._prompts_lock:
            kept = self._prompts.get(id(voice))
        if kept is not None and kept[0] is voice:
            return kept[1]
        rate = self.describe().sample_rate
        transcript = voice.transcript.strip()
        prompt = self._cloning_model().create_voice_clone_prompt(
            ref_audio=(voice.audio.astype(np.float32), rate), ref_text=transcript or None,
            x_vector_only_mode=not transcript)
        with self._prompts_lock:
            while len(self._prompts) >= 2 * self.max_streams:
                self._prompts.pop(next(iter(self._prompts)))
            self._prompts[id(voice)] = (voice, prompt)
        return prompt

    def _reference_codes(self, voice: ReferenceVoice) -> Any:
        """The clip's codes, decoded before the stream's own (in-context prompts only), as the package does."""
        item = self._clone_prompt(voice)[0]
        return item.ref_code if item.icl_mode and item.ref_code is not None else None


def _import_qwen_tts() -> Any:
    """`qwen_tts.Qwen3TTSModel`, imported without what its 25 Hz tokenizer drags in (LockN runs 12 Hz models
    only, and `import qwen_tts` always imports that tokenizer): torchaudio.compliance.kaldi and sox, which it
    imports at module level and never calls for 12 Hz models, and a flash-attn banner it prints to stdout.

    The sox package (a SoX command-line wrapper) runs `sox -h` in a shell when imported and logs a warning
    when the binary is missing; an unused import should not need a binary, so unless sox is installed a
    stand-in module answers the import and raises on use."""
    import contextlib
    import io
    import sys
    import types

    from workers.engines.torchaudio_shim import install_torchaudio_shim

    install_torchaudio_shim()
    if "sox" not in sys.modules and importlib.util.find_spec("sox") is None:
        sys.modules["sox"] = stand_in = types.ModuleType("sox")
        stand_in.__spec__ = importlib.machinery.ModuleSpec("sox", None)  # find_spec() of it must not raise
        stand_in.__getattr__ = _sox_missing  # type: ignore[method-assign]
    with contextlib.redirect_stdout(io.StringIO()):
        from qwen_tts import Qwen3TTSModel
    return Qwen3TTSModel


def _sox_missing(name: str) -> Any:
    raise AttributeError(f"sox.{name}: the sox package is not installed (Qwen3-TTS's 25 Hz tokenizer needs it; "
                         "LockN runs the 12 Hz models, which do not)")
