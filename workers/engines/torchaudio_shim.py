"""A stand-in for torchaudio, for the GPU engines' packages (fish-speech, qwen-tts) that import it.

No torchaudio wheel matches torch 2.13 (the newest on PyPI, 2.11.0, pins torch==2.11.0 and its
Linux wheel is a CUDA build whose lib/ will not load against torch 2.13+cpu), and torchaudio >= 2.9
has no ``list_audio_backends`` and needs torchcodec for ``load``.  What inference really calls:
- fish-speech: ``torchaudio.list_audio_backends()``, ``torchaudio.load(file_like, backend=...)`` and
  ``torchaudio.transforms.Resample`` (all in its ReferenceLoader);
- qwen-tts: nothing; ``import qwen_tts`` imports its 25 Hz tokenizer, which does
  ``import torchaudio.compliance.kaldi`` at module level, but the 12 Hz models LockN runs never call it.
So a tiny module backed by soundfile + julius replaces it; anything else raises with a sentence naming
the shim.  If a working torchaudio < 2.9 is installed it is left alone.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import sys
import types

__all__ = ["install_torchaudio_shim"]


def _new_module(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    # transformers' is_torchaudio_available() calls importlib.util.find_spec("torchaudio"),
    # which raises ValueError on a sys.modules entry whose __spec__ is None.
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = mod
    return mod


def _build_torchaudio_shim() -> types.ModuleType:
    import julius
    import soundfile as sf
    import torch

    ta = _new_module("torchaudio")
    ta.__version__ = "0.0+lockn-shim"
    functional = _new_module("torchaudio.functional")
    transforms = _new_module("torchaudio.transforms")
    compliance = _new_module("torchaudio.compliance")
    kaldi = _new_module("torchaudio.compliance.kaldi")
    ta.functional, ta.transforms, ta.compliance, compliance.kaldi = functional, transforms, compliance, kaldi

    def list_audio_backends() -> list[str]:
        return ["soundfile"]

    def load(uri, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True,
             channels_first: bool = True, format=None, buffer_size: int = 4096, backend=None):
        """torchaudio.load subset: path or file-like -> (float32 Tensor [C, T], sample_rate)."""
        if isinstance(uri, (bytes, bytearray)):
            uri = io.BytesIO(uri)
        frames = -1 if num_frames is None or num_frames < 0 else num_frames
        data, sr = sf.read(uri, start=frame_offset, frames=frames, dtype="float32",
                           always_2d=True)  # [T, C]
        wav = torch.from_numpy(data.T.copy() if channels_first else data.copy())
        return wav, sr

    def resample(waveform, orig_freq: int, new_freq: int, **_):
        if orig_freq == new_freq:
            return waveform
        return julius.resample_frac(waveform, int(orig_freq), int(new_freq))

    class Resample(torch.nn.Module):
        def __init__(self, orig_freq: int = 16000, new_freq: int = 16000, **_):
            super().__init__()
            self.orig_freq, self.new_freq = int(orig_freq), int(new_freq)

        def forward(self, waveform):
            return resample(waveform, self.orig_freq, self.new_freq)

    ta.list_audio_backends = list_audio_backends
    ta.load = load
    functional.resample = resample
    transforms.Resample = Resample

    def _missing(modname):
        def __getattr__(attr):
            raise AttributeError(
                f"{modname}.{attr} is not provided by the LockN torchaudio shim "
                "(only load/list_audio_backends/functional.resample/transforms.Resample)"
            )
        return __getattr__

    ta.__getattr__ = _missing("torchaudio")
    functional.__getattr__ = _missing("torchaudio.functional")
    transforms.__getattr__ = _missing("torchaudio.transforms")
    kaldi.__getattr__ = _missing("torchaudio.compliance.kaldi")
    return ta


def install_torchaudio_shim() -> str:
    """Make ``import torchaudio`` safe for fish_speech and qwen_tts. Returns "real" or "shim"."""
    mod = sys.modules.get("torchaudio")
    if mod is not None and getattr(mod, "__version__", "").endswith("lockn-shim"):
        return "shim"
    if mod is None and importlib.util.find_spec("torchaudio") is not None:
        try:
            import torchaudio as mod  # noqa: F401

            if hasattr(mod, "list_audio_backends"):
                return "real"  # torchaudio < 2.9 with a working native lib
        except Exception:  # CUDA build / ABI mismatch: lib fails to load
            pass
        for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
            del sys.modules[name]
    elif mod is not None and hasattr(mod, "list_audio_backends"):
        return "real"
    _build_torchaudio_shim()
    return "shim"
