"""Fish Speech (OpenAudio S1): the GPU engine, with zero-shot cloning from a reference clip + transcript.

Loaded with Fish Speech's own loaders (`DualARTransformer.from_pretrained` for text-to-semantic, the codec's
`load_model`) from the checkpoint folder it is built with (`LOCKN_FISH_CHECKPOINT_DIR`) on its device
(`LOCKN_FISH_DEVICE`: cuda when present, else cpu). The environment workarounds live in
`workers/engines/fish_compat.py`.

Serving: the package's `TTSInferenceEngine` runs one request at a time and hands back audio per whole sentence.
Here one `StreamBatcher` thread drives `FishStreamDecoder` (`workers/engines/fish_stream.py`): up to
`max_streams` sentences (one per job a GPU worker runs at once, `LOCKN_GPU_MAX_STREAMS`) are decoded together a
frame at a time with the package's prompt and sampling, and each one's audio is yielded every few frames (the
first after 4 frames, 0.19 s of speech) instead of once its sentence is done. On CUDA the decoder's frame step
is replayed from CUDA graphs, one per bucket of streams (1, 2, 4, … up to `max_streams`), recorded (or compiled:
`LOCKN_GPU_STEP`) while the engine loads (`workers/engines/fast_step.py`).

The checkpoint folder holds `config.json`, `model.pth`, `tokenizer.tiktoken`,
`special_tokens.json` (text-to-semantic) and `codec.pth` with either `codec_config.yaml`
(a Hydra config of the codec) or, for the released OpenAudio S1 weights, none: then the
package's own `modded_dac_vq` config is used.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from backend.media.engine import Engine, EngineInfo, ReferenceVoice, SynthesisOptions, VoiceInfo
from backend.media.model_catalog import FISH_REQUIRED_FILES, no_weights_reason, pulled
from workers.engines.fast_step import StepMode, step_options
from workers.engines.fish_stream import FishRequest, FishSampling, FishStreamDecoder
from workers.engines.row_cache import row_buckets
from workers.engines.stream_batcher import StreamBatcher
from workers.engines.torch_device import choose_device, default_precision

#: The built-in voice: Fish Speech without a reference speaks in a voice of its own choosing.
DEFAULT_VOICE = VoiceInfo(id="fish-default", name="Fish Speech default (zero-shot, en)", engine="fish",
                          language="en")
#: Generation settings within the ranges the package's ServeTTSRequest accepts.
SAMPLING = FishSampling(temperature=0.7, top_p=0.8, repetition_penalty=1.1)


class FishSpeechEngine(Engine):
    name = "fish"

    def __init__(self, checkpoint_dir: Path | None, device: str = "auto", max_new_tokens: int = 1024,
                 step: StepMode = "auto", compile_cache_dir: Path | None = None,
                 models_dir: Path | None = None, max_streams: int = 1, greedy: bool = False,
                 precision: Any = None) -> None:
        """`checkpoint_dir`: the weights' folder; without one, the `fish` model pulled under `models_dir` (the
        models folder, `LOCKN_MODELS_DIR`), when there is one. `device`: cuda, cpu, or auto (cuda when present);
        `max_new_tokens` bounds one sentence's generation; `max_streams`: sentences decoded together;
        `greedy`: always the likeliest token (tests). `step`: how the decoder's frame step runs (`fast_step`:
        graphs, compiled or eager; `auto`: CUDA graphs on CUDA), since eager decoding is launch-bound (seen on an
        H200: 14 frames/s for one stream); `compile_cache_dir` keeps compiled kernels between worker starts.
        `precision`: the model's and cache's dtype (`torch_device.default_precision` when None; the tests ask
        for bfloat16 on a CPU, to run the GPU's precision where CI runs)."""
        if checkpoint_dir is None and models_dir is not None:
            checkpoint_dir = pulled(models_dir, self.name)
        self.checkpoint_dir, self.wanted_device, self.max_new_tokens = checkpoint_dir, device, max_new_tokens
        self.step, self.compile_cache_dir = step, compile_cache_dir
        self.max_streams, self.greedy, self.precision = max_streams, greedy, precision
        self.codec: Any = None  # the package's DAC codec, once loaded
        self.decoder: FishStreamDecoder | None = None
        self.batcher: StreamBatcher | None = None  # the one thread that decodes every stream of this model
        self._device = "cpu"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("fish_speech") is None:
            return "fish-speech is not installed (make setup-fish)"
        if self.checkpoint_dir is None:
            return no_weights_reason(self.name, "LOCKN_FISH_CHECKPOINT_DIR")
        missing = [n for n in FISH_REQUIRED_FILES
                   if not (Path(self.checkpoint_dir) / n).is_file()]
        return f"{self.checkpoint_dir} lacks {', '.join(missing)}" if missing else None

    def load(self) -> None:
        from workers.engines import fish_compat

        self._device = choose_device(self.wanted_device)
        folder = Path(self.checkpoint_dir or "")
        precision = self.precision or default_precision(self._device)
        model = fish_compat.load_text2semantic(folder, device=self._device, precision=precision)
        self.codec = fish_compat.load_codec(folder, device=self._device)
        references = fish_compat.reference_loader(self.codec, precision)
        sampling = FishSampling(SAMPLING.temperature, SAMPLING.top_p, SAMPLING.repetition_penalty, self.greedy)
        self.decoder = FishStreamDecoder(model, self.codec, lambda clips: references.load_by_hash(clips, "on"),
                                         self.max_new_tokens, sampling, precision, self.max_streams)
        streams = self.decoder.max_streams  # fewer than asked where the GPU cannot hold their cache rows
        self.batcher = StreamBatcher(self.decoder, streams, name="fish")
        self.decoder.use_step(*step_options(self.step, self._device, self.compile_cache_dir))
        # Every bucket of streams built now, while the worker says "warming up", on the batcher's thread (the thread
        # that replays them: CUDA graph trees belong to the thread that records them).
        self.batcher.call(lambda: self.decoder.warm_up(row_buckets(streams)))

    def describe(self) -> EngineInfo:
        rate = self.codec.sample_rate if self.codec is not None else 44100
        device = self._device if self.codec is not None else self.wanted_device
        streams = self.batcher.max_streams if self.batcher is not None else self.max_streams
        return EngineInfo("fish", int(rate), True, device, importlib.metadata.version("fish-speech"),
                          streams=streams, streams_asked=self.max_streams)

    def voices(self) -> list[VoiceInfo]:
        return [DEFAULT_VOICE]

    def synthesize(self, text: str, voice: str | ReferenceVoice,
                   options: SynthesisOptions = SynthesisOptions()) -> Iterator[np.ndarray]:
        """One sentence → its audio, a piece every few frames, decoded together with the other streams. Fish
        Speech has no speed control: the job runner changes the tempo of what this yields."""
        from fish_speech.utils.schema import ServeReferenceAudio

        from workers.engines import fish_compat

        references: tuple = ()
        if isinstance(voice, ReferenceVoice):
            clip = fish_compat.wav_bytes(voice.audio, self.describe().sample_rate)
            references = (ServeReferenceAudio(audio=clip, text=voice.transcript),)
        try:
            yield from self.batcher.stream(FishRequest(text, references))  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - one message for every failure, its cause kept
            raise RuntimeError(f"Fish Speech failed: {exc}") from exc
