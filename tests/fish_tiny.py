"""Write a tiny, randomly initialised Fish Speech (OpenAudio S1 layout) checkpoint.

The folder produced by ``make_tiny_checkpoint(out_dir)`` is loadable by the REAL
fish-speech 0.1.0 loaders:

    out_dir/
      config.json          DualARModelArgs (model_type "dual_ar")          -> DualARTransformer.from_pretrained
      model.pth            text2semantic state_dict (7.3M params)          -> launch_thread_safe_queue / init_model
      tokenizer.tiktoken   byte-level tiktoken ranks (256 lines "b64 rank") -> FishTokenizer.from_pretrained
      special_tokens.json  fish special tokens + 4096 <|semantic:i|> tokens
      codec.pth            modded DAC state_dict (6.0M params)              -> codec loader (see fish_compat.load_codec)
      codec_config.yaml    shrunk copy of fish_speech/configs/modded_dac_vq.yaml (Hydra _target_ config)

Same layout as checkpoints/openaudio-s1-mini (which also keeps codec.pth beside
model.pth), plus codec_config.yaml because the real codec config describes a ~1.8 GB model.

Deterministic: fixed torch seed, so the same bytes-level weights are produced every run.
Usage: python make_tiny.py [OUT_DIR]   (default ./tiny_ckpt)
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

SEED = 1234
NUM_SEMANTIC = 4096  # OpenAudio S1: 4096 semantic ids (fish_speech.tokenizer defaults to 1024!)
NUM_CODEBOOKS = 10  # 1 semantic + 9 residual codebooks of the modded DAC

# Shrunk fish_speech/configs/modded_dac_vq.yaml. Same classes, same rates (44.1 kHz,
# hop 512, frame 2048 samples ~ 21.5 codec frames/s), same 1 x 4096 + 9 x 1024 codebooks.
TINY_CODEC_CONFIG = {
    "_target_": "fish_speech.models.dac.modded_dac.DAC",
    "sample_rate": 44100,
    "encoder_dim": 16,  # latent_dim = 16 * 2**4 = 256
    "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 128,
    "decoder_rates": [8, 8, 4, 2],
    "encoder_transformer_layers": [0, 0, 0, 1],
    "decoder_transformer_layers": [1, 0, 0, 0],
    "transformer_general_config": {
        "_target_": "fish_speech.models.dac.modded_dac.ModelArgs",
        "_partial_": True,
        "block_size": 2048,  # real: 16384. Saved causal_mask is block_size**2 bools;
        # 2048 frames of hop 512 = 23.8 s, the longest reference audio the tiny codec encodes.
        "n_local_heads": -1,
        "head_dim": 64,
        "rope_base": 10000,
        "norm_eps": 1e-5,
        "dropout_rate": 0.1,
        "attn_dropout_rate": 0.1,
        "channels_first": True,
    },
    "quantizer": {
        "_target_": "fish_speech.models.dac.rvq.DownsampleResidualVectorQuantize",
        "input_dim": 256,
        "n_codebooks": 9,
        "codebook_size": 1024,
        "codebook_dim": 8,
        "quantizer_dropout": 0.5,
        "downsample_factor": [2, 2],
        "semantic_codebook_size": NUM_SEMANTIC,
        **{
            key: {
                "_target_": "fish_speech.models.dac.modded_dac.WindowLimitedTransformer",
                "causal": True,
                "window_size": 128,
                "input_dim": 256,
                "config": {
                    "_target_": "fish_speech.models.dac.modded_dac.ModelArgs",
                    "block_size": 2048,  # real: 4096
                    "n_layer": 1,
                    "n_head": 4,
                    "dim": 128,
                    "intermediate_size": 256,
                    "n_local_heads": -1,
                    "head_dim": 32,
                    "rope_base": 10000,
                    "norm_eps": 1e-5,
                    "dropout_rate": 0.1,
                    "attn_dropout_rate": 0.1,
                    "channels_first": True,
                },
            }
            for key in ("pre_module", "post_module")
        },
    },
}


def special_tokens() -> list[str]:
    """fish_speech.tokenizer.ALL_SPECIAL_TOKENS with the semantic block rebuilt for 4096 ids."""
    from fish_speech.tokenizer import ALL_SPECIAL_TOKENS, SEMANTIC_TOKEN_TEMPLATE

    base = [t for t in ALL_SPECIAL_TOKENS if not t.startswith("<|semantic:")]
    return base + [SEMANTIC_TOKEN_TEMPLATE.format(i=i) for i in range(NUM_SEMANTIC)]


def make_tiny_checkpoint(out_dir: Path, text2semantic: dict | None = None, package_codec: bool = False,
                         device: str = "cpu") -> None:
    """``text2semantic``: DualARModelArgs to use instead of the tiny ones (`bench/full_size.py` gives S1-mini's);
    ``package_codec``: the package's own modded_dac_vq codec (the released size; no codec_config.yaml, as in the
    released folder) instead of the tiny one; ``device``: where the models are built (a GPU builds full size in
    seconds; the text-to-semantic model is then stored in bfloat16, as released)."""
    from workers.engines.torchaudio_shim import install_torchaudio_shim

    install_torchaudio_shim()  # fish_speech.models.dac -> audiotools imports torchaudio

    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from fish_speech.models.text2semantic.llama import DualARModelArgs, DualARTransformer
    from fish_speech.tokenizer import FishTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    # 1. byte-level tokenizer: 256 mergeable ranks, no merges.
    (out_dir / "tokenizer.tiktoken").write_text(
        "".join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256))
    )
    specials = special_tokens()
    tokenizer = FishTokenizer(str(out_dir / "tokenizer.tiktoken"), specials)

    # 2. text2semantic DualAR transformer; save_pretrained writes
    #    config.json + model.pth + tokenizer.tiktoken + special_tokens.json (ids 256..).
    tiny = dict(
        vocab_size=256 + len(specials),
        n_layer=2,
        n_head=4,
        dim=128,
        intermediate_size=256,
        head_dim=32,
        max_seq_len=4096,  # generate_long refuses prompts longer than max_seq_len - 2048
        codebook_size=NUM_SEMANTIC,
        num_codebooks=NUM_CODEBOOKS,
        n_fast_layer=1,
    )
    cfg = DualARModelArgs(**{**tiny, **(text2semantic or {})})
    with torch.device(device):
        model = DualARTransformer(cfg, tokenizer=tokenizer)
    if device != "cpu":
        model = model.to(torch.bfloat16)
    model.save_pretrained(str(out_dir))
    del model

    # 3. codec: instantiate the shrunk modded DAC config with Hydra, save its state_dict.
    if package_codec:
        codec_cfg = _package_codec_config()
    else:
        codec_cfg = OmegaConf.create(TINY_CODEC_CONFIG)
        # "# @package _global_" keeps the keys at the root when Hydra composes this file by a
        # path relative to fish_speech/configs (see fish_compat.load_codec); without it Hydra
        # nests the config under the path's folders and instantiate() returns a plain dict.
        (out_dir / "codec_config.yaml").write_text(
            "# @package _global_\n" + OmegaConf.to_yaml(codec_cfg)
        )
    with torch.device(device):
        codec = instantiate(codec_cfg)
    torch.save(codec.state_dict(), out_dir / "codec.pth")


def _package_codec_config():  # type: ignore[no-untyped-def]
    """fish_speech/configs/modded_dac_vq.yaml, composed by Hydra as the package's own loader does."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from workers.engines import fish_compat

    configs = Path(fish_compat.import_dac_inference().__file__).resolve().parents[2] / "configs"
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(configs)):
        return compose(config_name="modded_dac_vq")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_ckpt")
    t0 = time.perf_counter()
    make_tiny_checkpoint(target)
    print(f"wrote {target} in {time.perf_counter() - t0:.2f}s:")
    for p in sorted(target.iterdir()):
        print(f"  {p.name:22s} {p.stat().st_size / 1e6:8.2f} MB")
