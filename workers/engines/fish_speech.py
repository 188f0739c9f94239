"""Fish Speech (OpenAudio S1): the GPU engine, with zero-shot cloning from a reference clip + transcript.

Loaded with Fish Speech's own code (`launch_thread_safe_queue` for text-to-semantic,
`load_model` for the codec, `TTSInferenceEngine` for inference) from the checkpoint
folder it is built with (`LOCKN_FISH_CHECKPOINT_DIR`) on its device (`LOCKN_FISH_DEVICE`:
cuda when present, else cpu).
The environment workarounds live in `workers/engines/fish_compat.py`.

The checkpoint folder holds `config.json`, `model.pth`, `tokenizer.tiktoken`,
`special_tokens.json` (text-to-semantic) and `codec.pth` with either `codec_config.yaml`
(a Hydra config of the codec) or, for the released OpenAudio S1 weights, none: then the
package's own `modded_dac_vq` config is used.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from backend.media.engine import Engine, EngineInfo, ReferenceVoice, SynthesisOptions, VoiceInfo
from backend.media.model_catalog import FISH_REQUIRED_FILES, no_weights_reason, pulled

#: The built-in voice: Fish Speech without a reference speaks in a voice of its own choosing.
DEFAULT_VOICE = VoiceInfo(id="fish-default", name="Fish Speech default (zero-shot, en)", engine="fish",
                          language="en")
#: Generation settings within the ranges ServeTTSRequest accepts.
SAMPLING = {"temperature": 0.7, "top_p": 0.8, "repetition_penalty": 1.1, "chunk_length": 200}


class FishSpeechEngine(Engine):
    name = "fish"

    def __init__(self, checkpoint_dir: Path | None, device: str = "auto", max_new_tokens: int = 1024,
                 compile: bool | None = None, compile_cache_dir: Path | None = None,
                 models_dir: Path | None = None) -> None:
        """`checkpoint_dir`: the weights' folder; without one, the `fish` model pulled under `models_dir` (the
        models folder, `LOCKN_MODELS_DIR`), when there is one. `device`: cuda, cpu, or auto (cuda when present);
        `max_new_tokens` bounds one sentence's generation; `compile`: fish-speech's own compiled decode
        (`torch.compile`, CUDA graphs), by default on CUDA only: eager decoding is launch-bound (seen on an H200:
        14-16 tokens/s, 12 GB/s of 4,300); `compile_cache_dir` keeps the compiled kernels between worker starts
        (TorchInductor's cache)."""
        if checkpoint_dir is None and models_dir is not None:
            checkpoint_dir = pulled(models_dir, self.name)
        self.checkpoint_dir, self.wanted_device, self.max_new_tokens = checkpoint_dir, device, max_new_tokens
        self.compile, self.compile_cache_dir = compile, compile_cache_dir
        self._engine = None
        self._device = "cpu"
        self._lock = threading.Lock()  # one generation at a time per loaded model

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("fish_speech") is None:
            return "fish-speech is not installed (make setup-fish)"
        if self.checkpoint_dir is None:
            return no_weights_reason(self.name, "LOCKN_FISH_CHECKPOINT_DIR")
        missing = [n for n in FISH_REQUIRED_FILES
                   if not (Path(self.checkpoint_dir) / n).is_file()]
        return f"{self.checkpoint_dir} lacks {', '.join(missing)}" if missing else None

    def choose_device(self) -> str:
        if self.wanted_device != "auto":
            return self.wanted_device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def load(self) -> None:
        from workers.engines import fish_compat

        self._device = self.choose_device()
        compile = self._device.startswith("cuda") if self.compile is None else self.compile
        if compile and self.compile_cache_dir is not None:
            self.compile_cache_dir.mkdir(parents=True, exist_ok=True)
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.compile_cache_dir))
        self._engine = fish_compat.load_engine(Path(self.checkpoint_dir or ""), device=self._device, compile=compile)

    def describe(self) -> EngineInfo:
        rate = self._engine.decoder_model.sample_rate if self._engine is not None else 44100
        device = self._device if self._engine is not None else self.wanted_device
        return EngineInfo("fish", int(rate), True, device, importlib.metadata.version("fish-speech"))

    def voices(self) -> list[VoiceInfo]:
        return [DEFAULT_VOICE]

    def synthesize(self, text: str, voice: str | ReferenceVoice,
                   options: SynthesisOptions = SynthesisOptions()) -> Iterator[np.ndarray]:
        """Fish Speech has no speed control: the job runner changes the tempo of what this yields."""
        from fish_speech.utils.schema import ServeReferenceAudio, ServeTTSRequest

        from workers.engines import fish_compat

        references = []
        if isinstance(voice, ReferenceVoice):
            clip = fish_compat.wav_bytes(voice.audio, self.describe().sample_rate)
            references = [ServeReferenceAudio(audio=clip, text=voice.transcript)]
        request = ServeTTSRequest(text=text, references=references, streaming=True, use_memory_cache="on",
                                  max_new_tokens=self.max_new_tokens, **SAMPLING)
        with self._lock:
            for result in self._engine.inference(request):  # type: ignore[union-attr]
                if result.code == "error":
                    raise RuntimeError(f"Fish Speech failed: {result.error}")
                if result.code == "segment":
                    yield np.asarray(result.audio[1], dtype=np.float32)
