"""Random checkpoints at the released models' sizes, for measuring real compute without downloading weights.

`bench.gpu --full-size` builds these on the GPU (seconds) with the tests' own builders (`tests/qwen_tiny.py`,
`tests/fish_tiny.py`), given the layouts below instead of their tiny ones, and loads them through the engines'
own loaders. Random weights cost exactly what trained ones cost per token: same classes, widths, depths,
vocabularies, codebooks and cache lengths. They rarely say "stop", so a benchmark fixes the tokens per sentence.

Sizes, from the models' published configuration files (check them against a downloaded `config.json` when in
doubt; the builders print the parameter counts):
- Qwen3-TTS-12Hz-1.7B: talker 28 layers × 2048 (ffn 6144, 16 heads / 8 kv, head 128, M-RoPE [24, 20, 20]),
  text embeddings 151,936 × 2048, 16 code groups; code predictor 5 layers × 1024 (ffn 3072); 12 Hz speech
  tokenizer: decoder 8 layers × 512 (decoder_dim 1536, sliding window 72), Mimi encoder 8 layers × 512.
  1.92 B parameters in talker and predictor.
- Qwen3-TTS-12Hz-0.6B: the same with the talker 1024 wide (ffn 3072).
- OpenAudio S1-mini (Fish Speech): DualAR 28 layers × 1024 (ffn 3072, 16 heads / 8 kv, head 128, qk-norm,
  vocabulary 155,776, 10 codebooks × 4096), fast transformer 4 layers × 1024 (head 64); codec: the package's own
  `modded_dac_vq` (391 M). 860 M parameters in the text-to-semantic model.

    .venv/bin/python -m bench.full_size --qwen DIR [--size 1.7b|0.6b|tiny] [--device cuda|cpu]

writes a Qwen checkpoint folder on its own: `bench/gpu_lease.sh` builds one in LockN's environment (qwen-tts 0.1.1
saves it) for `bench.peer_qwen`, which loads it in another (transformers 5); `tiny` is the tests' small layout.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

_QWEN_SPEECH_TOKENIZER = {
    "encoder_valid_num_quantizers": 16,
    "encoder_config": {"hidden_size": 512, "num_filters": 64, "codebook_dim": 256, "num_quantizers": 32,
                       "vector_quantization_hidden_dimension": 256, "upsample_groups": 512, "num_hidden_layers": 8,
                       "intermediate_size": 2048, "num_attention_heads": 8, "num_key_value_heads": 8,
                       "head_dim": 64},
    "decoder_config": {"codebook_dim": 512, "hidden_size": 512, "latent_dim": 1024, "num_attention_heads": 16,
                       "num_key_value_heads": 16, "head_dim": 64, "intermediate_size": 1024, "num_hidden_layers": 8,
                       "num_quantizers": 16, "vector_quantization_hidden_dimension": 512, "decoder_dim": 1536},
}
_QWEN_CODE_PREDICTOR = {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 5,
                        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "num_code_groups": 16}
_QWEN_SPEAKER_ENCODER = {"enc_channels": [512, 512, 512, 512, 1536], "enc_attention_channels": 128,
                         "enc_res2net_scale": 8, "enc_se_channels": 128}


def _qwen_layout(width: int, ffn: int) -> dict:
    rope = {"rope_type": "default", "type": "default", "mrope_section": [24, 20, 20], "interleaved": True}
    talker = {"hidden_size": width, "intermediate_size": ffn, "num_hidden_layers": 28, "num_attention_heads": 16,
              "num_key_value_heads": 8, "head_dim": 128, "rope_scaling": rope, "num_code_groups": 16,
              "text_hidden_size": 2048, "text_vocab_size": 151936, "code_predictor_config": _QWEN_CODE_PREDICTOR}
    return {"talker": talker, "speaker_encoder": _QWEN_SPEAKER_ENCODER, "speech_tokenizer": _QWEN_SPEECH_TOKENIZER,
            "generation": {"max_new_tokens": 8192}}


QWEN_LAYOUTS = {"1.7b": _qwen_layout(2048, 6144), "0.6b": _qwen_layout(1024, 3072)}

FISH_S1_MINI = {
    "vocab_size": 155776, "n_layer": 28, "n_head": 16, "dim": 1024, "intermediate_size": 3072, "n_local_heads": 8,
    "head_dim": 128, "rope_base": 1000000, "norm_eps": 1e-6, "max_seq_len": 8192, "tie_word_embeddings": False,
    "attention_qk_norm": True, "codebook_size": 4096, "num_codebooks": 10, "scale_codebook_embeddings": True,
    "n_fast_layer": 4, "fast_dim": 1024, "fast_n_head": 16, "fast_n_local_heads": 8, "fast_head_dim": 64,
    "fast_intermediate_size": 3072,
}


def build_qwen(folder: Path, size: str, device: str, kind: str = "custom_voice") -> Path:
    """A Qwen3-TTS 12 Hz checkpoint of `size` ("1.7b", "0.6b") with random weights, built on `device`."""
    from tests.qwen_tiny import make_tiny_qwen_checkpoint

    return make_tiny_qwen_checkpoint(folder, kind, layout=QWEN_LAYOUTS[size], device=device)


def build_fish(folder: Path, device: str) -> Path:
    """An OpenAudio S1-mini-sized Fish Speech checkpoint with random weights, built on `device`."""
    from tests.fish_tiny import make_tiny_checkpoint

    make_tiny_checkpoint(folder, FISH_S1_MINI, package_codec=True, device=device)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qwen", type=Path, required=True, help="folder to write the CustomVoice checkpoint into")
    parser.add_argument("--size", choices=(*QWEN_LAYOUTS, "tiny"), default="1.7b")
    parser.add_argument("--device", help="where to build it (default: cuda when there is one)")
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    if args.size == "tiny":
        from tests.qwen_tiny import make_tiny_qwen_checkpoint

        make_tiny_qwen_checkpoint(args.qwen, "custom_voice")
    else:
        build_qwen(args.qwen, args.size, device)
    print(f"Qwen3-TTS 12 Hz {args.size} CustomVoice, random weights, built on {device} into {args.qwen} "
          f"in {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
