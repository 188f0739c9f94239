"""The workarounds that let the REAL fish-speech 0.1.0 inference code run in LockN's environment
(torch 2.13, numpy 2.x, pydantic 2.14, no torchaudio, fish-speech installed with --no-deps), in one
place. `workers/engines/fish_speech.py` calls these before it touches fish_speech. Each exists because:

1. torchaudio.  fish_speech.inference_engine.reference_loader, fish_speech.models.dac.inference
   and audiotools (descript-audiotools, imported by fish_speech.models.dac.modded_dac) do
   ``import torchaudio`` at module level: `workers/engines/torchaudio_shim.py` stands in for it.

2. pyrootutils.  ``fish_speech.models.dac.inference`` runs
   ``pyrootutils.setup_root(__file__, indicator=".project-root", pythonpath=True)`` at import.
   It searches upward from site-packages/fish_speech/models/dac/ (NOT from the cwd), so a
   ``.project-root`` in the cwd does not help; one at the venv root does, but then setup_root
   sets $PROJECT_ROOT, loads <venv>/.env and puts the venv dir first on sys.path.  We instead
   import that module with ``setup_root`` replaced by a no-op for the duration of the import.

3. Codec loading with the real ``fish_speech.models.dac.inference.load_model`` without
   writing into site-packages: load_model composes a Hydra config *by name* from
   fish_speech/configs/; Hydra's file source joins ``f"{configs_dir}/{name}.yaml"``, so a name
   relative to that dir (``os.path.relpath(ckpt/codec_config, configs_dir)``) reaches the
   checkpoint's own config.  The config file starts with ``# @package _global_`` (otherwise
   Hydra nests it under the path's folders and instantiate() returns a dict).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from workers.engines.torch_device import default_precision
from workers.engines.torchaudio_shim import install_torchaudio_shim

__all__ = [
    "import_dac_inference",
    "load_codec",
    "check_t2s_checkpoint",
    "load_engine",
    "load_text2semantic",
    "reference_loader",
    "default_precision",
    "wav_bytes",
]


# --------------------------------------------------------------------------- codec


def import_dac_inference():
    """Import fish_speech.models.dac.inference without pyrootutils' project-root search."""
    if "fish_speech.models.dac.inference" in sys.modules:
        return sys.modules["fish_speech.models.dac.inference"]
    install_torchaudio_shim()
    import pyrootutils

    original = pyrootutils.setup_root
    pyrootutils.setup_root = lambda *args, **kwargs: None
    try:
        import fish_speech.models.dac.inference as dac_inference
    finally:
        pyrootutils.setup_root = original
    return dac_inference


def load_codec(ckpt_dir: str | Path, device: str = "cpu",
               config_file: str = "codec_config.yaml", weights_file: str = "codec.pth"):
    """Load the codec with the real fish_speech.models.dac.inference.load_model.

    ``load_model(config_name, checkpoint_path, device)`` only looks up configs in
    fish_speech/configs/, so the checkpoint's own config is passed as a name relative to that
    folder. Without one (the released OpenAudio S1 weights) the package's ``modded_dac_vq`` is used.
    """
    dac_inference = import_dac_inference()
    config_path = Path(ckpt_dir).resolve() / config_file
    weights_path = Path(ckpt_dir).resolve() / weights_file
    if not weights_path.is_file():
        raise FileNotFoundError(weights_path)
    if not config_path.is_file():
        return dac_inference.load_model("modded_dac_vq", str(weights_path), device=device)
    configs_dir = Path(dac_inference.__file__).resolve().parents[2] / "configs"
    name = os.path.relpath(config_path.with_suffix(""), configs_dir)
    return dac_inference.load_model(name, str(weights_path), device=device)


# --------------------------------------------------------------------------- engine


def check_t2s_checkpoint(ckpt_dir: str | Path) -> None:
    """launch_thread_safe_queue() waits on an Event with no timeout; if init_model raises in
    its worker thread the caller hangs forever.  Fail fast on the usual causes instead."""
    ckpt_dir = Path(ckpt_dir)
    missing = [n for n in ("config.json", "model.pth", "tokenizer.tiktoken")
               if not (ckpt_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{ckpt_dir}: missing {missing}")
    install_torchaudio_shim()
    from fish_speech.models.text2semantic.llama import BaseModelArgs
    from fish_speech.tokenizer import FishTokenizer

    cfg = BaseModelArgs.from_pretrained(str(ckpt_dir))
    tok = FishTokenizer.from_pretrained(str(ckpt_dir))
    n_sem = len(tok.semantic_id_to_token_id)
    if n_sem < cfg.codebook_size:
        raise ValueError(f"special_tokens.json has {n_sem} semantic tokens, "
                         f"model codebook_size is {cfg.codebook_size}")
    if cfg.vocab_size < tok.vocab_size + tok.num_special_tokens:
        raise ValueError("config vocab_size smaller than tokenizer vocab + special tokens")



def load_engine(ckpt_dir: str | Path, device: str = "cpu", precision=None, compile: bool = False):
    """Real loaders end to end: launch_thread_safe_queue + dac load_model + TTSInferenceEngine."""
    install_torchaudio_shim()
    from fish_speech.inference_engine import TTSInferenceEngine
    from fish_speech.models.text2semantic.inference import launch_thread_safe_queue

    precision = precision or default_precision(device)
    check_t2s_checkpoint(ckpt_dir)
    llama_queue = launch_thread_safe_queue(
        checkpoint_path=str(ckpt_dir), device=device, precision=precision, compile=compile
    )
    decoder_model = load_codec(ckpt_dir, device=device)
    return TTSInferenceEngine(
        llama_queue=llama_queue, decoder_model=decoder_model, precision=precision, compile=compile
    )


def load_text2semantic(ckpt_dir: str | Path, device: str = "cpu", precision=None):
    """The DualAR model as the package's `init_model` loads it (`DualARTransformer.from_pretrained`, moved to
    `device` in `precision`), without the single-request cache it would then allocate (LockN's batched loop,
    `workers/engines/fish_stream.py`, keeps a cache of its own)."""
    install_torchaudio_shim()
    from fish_speech.models.text2semantic.llama import DualARTransformer

    check_t2s_checkpoint(ckpt_dir)
    model = DualARTransformer.from_pretrained(str(ckpt_dir), load_weights=True)
    return model.to(device=device, dtype=precision or default_precision(device)).eval()


def reference_loader(codec, precision):
    """The package's reference side (`ReferenceLoader.load_by_hash`: a clip's WAV bytes → its codes, cached by
    hash; `VQManager.decode_vq_tokens`): a `TTSInferenceEngine` whose text-to-semantic queue is never used."""
    from fish_speech.inference_engine import TTSInferenceEngine

    return TTSInferenceEngine(llama_queue=None, decoder_model=codec, precision=precision, compile=False)


def wav_bytes(audio, sample_rate: int) -> bytes:
    """float numpy mono/[T, C] audio -> 16-bit PCM WAV bytes (for ServeReferenceAudio.audio)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
