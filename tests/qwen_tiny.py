"""Write a tiny, randomly initialised Qwen3-TTS 12 Hz checkpoint (CustomVoice or Base layout).

``make_tiny_qwen_checkpoint(out_dir, kind)`` builds the folder from qwen-tts 0.1.1's OWN config and
model classes and saves it with ``save_pretrained``, so the REAL loader takes it unchanged:

    from qwen_tts import Qwen3TTSModel
    model = Qwen3TTSModel.from_pretrained(str(path), dtype=torch.float32, device_map="cpu")

Same architecture as Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice (kind="custom_voice") or
Qwen/Qwen3-TTS-12Hz-1.7B-Base (kind="base"), every width shrunk:

    out_dir/
      config.json              Qwen3TTSConfig (model_type "qwen3_tts")   -> AutoConfig (registered by
                               Qwen3TTSModel.from_pretrained) -> Qwen3TTSForConditionalGeneration
      model.safetensors        talker (+ code predictor; + speaker_encoder for "base")
                                                                          -> AutoModel.from_pretrained
      generation_config.json   sampling defaults, max_new_tokens=24     -> read twice: by transformers as
                               a GenerationConfig, and as a plain dict by Qwen3TTSForConditionalGeneration
                               .from_pretrained (model.generate_config, Qwen3TTSModel.generate_defaults)
      tokenizer.json           byte-level BPE (Qwen2 pre-tokenizer layout) + chat special tokens
      vocab.json, merges.txt   the same BPE in slow-tokenizer form
      added_tokens.json        the 6 special tokens (ids 350..355)
      tokenizer_config.json    tokenizer_class "Qwen2Tokenizer"          -> AutoProcessor -> Qwen3TTSProcessor
      special_tokens_map.json                                               (its tokenizer: Qwen2TokenizerFast)
      speech_tokenizer/
        config.json            Qwen3TTSTokenizerV2Config ("qwen3_tts_tokenizer_12hz": Mimi encoder +
                               Qwen3TTSTokenizerV2Decoder)              -> Qwen3TTSTokenizer.from_pretrained
        model.safetensors      codec weights                                (AutoModel, same kwargs as above)
        preprocessor_config.json  EncodecFeatureExtractor, 24 kHz      -> AutoFeatureExtractor

What is kept from the real checkpoints (because the code depends on it): 24 kHz in and out, 12.5 codec
frames/s (Mimi encoder strides 8*6*5*4 then 2 = 1920 samples/frame; decoder 8*5*4*3*2*2 = 1920), codebook
size 2048, a 3072-entry talker codec vocab whose top 1024 ids hold the control/speaker/language ids (the
real eos/pad/bos/think/language/speaker ids), interleaved M-RoPE in the talker, GQA, a code predictor
narrower than the talker (so small_to_mtp_projection is a Linear, as in 1.7B), an ECAPA speaker encoder
(Base only) whose output width equals the talker width, tts_model_size "1b7" (instruct enabled).
What is shrunk: every width and depth, 4 code groups instead of 16, a 356-token text vocab (350 BPE + 6 special).

Deterministic: weights are drawn under a forked torch RNG seeded with SEED (the caller's RNG state is
untouched) and the BPE trainer is deterministic, so the same bytes come out every run.  Generation
samples (do_sample=True, as the real generation_config): seed torch before a call for identical audio.

Notes for tests:
- Call torch.set_num_threads(1) first on a small shared box: with 2 threads each call took ~4.6 s
  instead of ~0.2 s here (OpenMP barrier spinning on ~100 tiny forward passes per call).
- Every Qwen3TTSModel.generate_* call ends in ONE ``tts.model.generate(**kwargs)`` call; wrapping that
  shows what reached the prompt: ``instruct_ids`` (list, per item a [1, n] id tensor of
  "<|im_start|>user\n{instruct}<|im_end|>\n", or None), ``input_ids``, ``ref_ids``, ``speakers``,
  ``languages`` and ``voice_clone_prompt`` (dict of lists: ref_code [T, 4] or None, ref_spk_embedding
  [32], x_vector_only_mode, icl_mode).  ``tts.processor.decode(ids[0])`` turns ids back into text.
- The decoder emits noise (std ~0.07, peak ~0.4), not silence, and it depends on the codes.

Usage: python tests/qwen_tiny.py        (builds both kinds into a temp dir, loads and runs them)
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

SEED = 1234
SAMPLE_RATE = 24000  # real: 24 kHz in (speaker encoder, codec encoder) and out (codec decoder)
FRAME_SAMPLES = 1920  # 24000 / 12.5 Hz; encode_downsample_rate == decode_upsample_rate in the real config
NUM_CODE_GROUPS = 4  # real: 16 (1 semantic + 15 acoustic codebooks per 12.5 Hz frame)
CODEBOOK_SIZE = 2048  # real: 2048; the talker's codec ids 0..2047 are audio codes
TALKER_VOCAB = 3072  # real: 3072 = 2048 audio codes + 1024 control ids.  generate() suppresses the top
# 1024 (vocab_size-1024 .. vocab_size-1) except eos while sampling, so every control/speaker/language id
# below lies in [2048, 3072) as in the real layout: usable as prompt embeddings, never emitted as audio.
MAX_NEW_TOKENS = 24  # codec frames per call: 24 / 12.5 Hz = 1.92 s of audio; random weights seldom
# sample eos (see tiny_generation_kwargs), so a call runs to this bound.

# Control ids copied from the real talker_config (Qwen3-TTS-12Hz-1.7B-*).
CODEC_IDS = {
    "codec_pad_id": 2148,
    "codec_bos_id": 2149,
    "codec_eos_token_id": 2150,
    "codec_think_id": 2154,
    "codec_nothink_id": 2155,
    "codec_think_bos_id": 2156,
    "codec_think_eos_id": 2157,
}
# Real language ids. Keys containing "dialect" are hidden from get_supported_languages() but are
# what spk_is_dialect points at (a dialect speaker + "chinese"/"auto" switches to them).
LANGUAGE_IDS = {
    "english": 2050,
    "german": 2053,
    "spanish": 2054,
    "chinese": 2055,
    "japanese": 2058,
    "french": 2061,
    "sichuan_dialect": 2062,
    "korean": 2064,
    "russian": 2069,
    "italian": 2070,
    "portuguese": 2071,
    "beijing_dialect": 2074,
}
# Two of the nine real CustomVoice speakers, with their real codec ids (rows of the talker's
# codec_embedding are the speaker embeddings).  Neither is a dialect speaker.
SPEAKER_IDS = {"aiden": 2861, "serena": 3066}

# Text vocabulary.  The prompts are built as strings ("<|im_start|>assistant\n{text}<|im_end|>\n..."),
# and generate() slices the token ids by POSITION: input_id[:, :3] is the role prefix
# (<|im_start|>, "assistant", "\n"), input_id[:, 3:-5] the text, the last 5 the suffix; ref_id[:, 3:-2].
# So "assistant" and "\n" must each be ONE token ("user" too, for the instruct prompt
# "<|im_start|>user\n{instruct}<|im_end|>\n", which is used whole).
SPECIAL_TOKENS = [
    "<|endoftext|>",  # real id 151643
    "<|im_start|>",  # real 151644 (config.im_start_token_id)
    "<|im_end|>",  # real 151645 (config.im_end_token_id)
    "<tts_pad>",  # real 151671 (config.tts_pad_token_id)
    "<tts_text_bos>",  # real 151672 (config.tts_bos_token_id)
    "<tts_text_eod>",  # real 151673 (config.tts_eos_token_id)
]
# Qwen2's pre-tokenizer regex (tokenizer.json of every Qwen2/Qwen3 checkpoint), kept as
# Sequence[Split, ByteLevel] like the real file.  NB: Qwen3TTSModel loads the processor with
# fix_mistral_regex=True; transformers 4.57.3 acts on that only for vocabularies over 100k tokens (it
# then swaps pre_tokenizer[0] for its Mistral regex), so the real checkpoint may get that swap and this
# 356-token one never does.  The chat words split the same way under either regex.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Training text for the BPE: the chat words many times (so they merge into single tokens) plus a
# little English.  Trained once per build; tokenizers' BPE trainer breaks ties deterministically.
_BPE_CORPUS = [
    "assistant user system assistant user system",
    "Hello there. A reference. Speak slowly and warmly.",
    "The quick brown fox jumps over the lazy dog. This is a test of the speech system.",
] * 50
_BPE_VOCAB_SIZE = 512  # an upper bound; the corpus runs out of pairs at 350 (256 bytes + 94 merges)


def _build_text_tokenizer():
    """A Qwen2TokenizerFast over a byte-level BPE trained in code (no download)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2TokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    # Same layout as Qwen2's tokenizer.json: NFC normaliser, Split(regex) then ByteLevel(no regex).
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text encodes
        special_tokens=[],
    )
    tok.train_from_iterator(_BPE_CORPUS, trainer=trainer)
    # Special tokens go after the BPE vocab (ids base..base+5), like Qwen2's 151643+ block.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])

    fast = Qwen2TokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",  # Qwen2/Qwen3 chat checkpoints: eos <|im_end|>, pad <|endoftext|>
        pad_token="<|endoftext|>",
        unk_token=None,
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=131072,
    )
    for word in ("assistant", "user", "\n"):
        ids = fast(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"{word!r} must be one token, got {ids}"
    return fast


def _talker_config(kind: str, text_vocab_size: int) -> dict:
    """Qwen3TTSTalkerConfig kwargs: the 1.7B layout (28 layers, 2048 wide, 16 heads/8 kv, head_dim 128,
    M-RoPE [24,20,20] interleaved) shrunk to 1 layer, 32 wide, 2 heads/1 kv, head_dim 16."""
    return {
        "vocab_size": TALKER_VOCAB,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,  # real 16/8: keep it grouped-query
        "head_dim": 16,  # not an __init__ argument; stored via **kwargs and read by the attention
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000,
        # Talker attention reads rope_scaling["mrope_section"] and ["interleaved"] unconditionally;
        # the sections must sum to head_dim/2 (real: [24,20,20] for head_dim 128).
        "rope_scaling": {"rope_type": "default", "type": "default", "mrope_section": [4, 2, 2],
                         "interleaved": True},
        "num_code_groups": NUM_CODE_GROUPS,
        "text_hidden_size": 32,  # real 2048 (= talker width for 1.7B); text_projection maps it
        "text_vocab_size": text_vocab_size,  # not an __init__ arg either; Qwen3TTSTalkerModel reads it
        **CODEC_IDS,
        "codec_language_id": dict(LANGUAGE_IDS),
        # CustomVoice: the preset speakers.  Base: none (must be a dict, not None: the model calls
        # .keys() on it).
        "spk_id": dict(SPEAKER_IDS) if kind == "custom_voice" else {},
        "spk_is_dialect": {name: False for name in SPEAKER_IDS} if kind == "custom_voice" else {},
        "code_predictor_config": {
            # real: vocab 2048, 1024 wide (narrower than the 2048-wide talker), 5 layers, 16/8 heads,
            # head_dim 128, 16 code groups.
            "vocab_size": CODEBOOK_SIZE,
            "hidden_size": 16,  # != talker width -> small_to_mtp_projection is a Linear, as in 1.7B
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "hidden_act": "silu",
            "max_position_embeddings": 65536,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000,
            "num_code_groups": NUM_CODE_GROUPS,
        },
    }


def _speaker_encoder_config(talker_hidden: int) -> dict:
    """ECAPA-TDNN (Base only).  mel_dim must stay 128 (extract_speaker_embedding hard-codes 128 mels);
    enc_dim must equal the talker width (the x-vector is spliced in as a codec embedding);
    enc_channels[-1] must equal the sum of enc_channels[1:-1] (multi-layer feature aggregation).
    Real: enc_dim 2048, channels [512,512,512,512,1536], attention 128, res2net scale 8, se 128."""
    return {
        "mel_dim": 128,
        "enc_dim": talker_hidden,
        "enc_channels": [16, 16, 16, 16, 48],
        "enc_kernel_sizes": [5, 3, 3, 3, 1],
        "enc_dilations": [1, 2, 3, 4, 1],
        "enc_attention_channels": 8,
        "enc_res2net_scale": 4,  # channels 16 / scale 4 = 4 per branch
        "enc_se_channels": 8,
        "sample_rate": SAMPLE_RATE,
    }


def _speech_tokenizer_config() -> dict:
    """Qwen3TTSTokenizerV2Config kwargs (the 12 Hz codec).  Rates kept, widths shrunk."""
    return {
        "encoder_valid_num_quantizers": NUM_CODE_GROUPS,  # real 16 of the encoder's 32
        "input_sample_rate": SAMPLE_RATE,
        "output_sample_rate": SAMPLE_RATE,
        "encode_downsample_rate": FRAME_SAMPLES,
        "decode_upsample_rate": FRAME_SAMPLES,
        "encoder_config": {  # a transformers MimiConfig
            "sampling_rate": SAMPLE_RATE,
            "frame_rate": 12.5,  # encoder convs give 24000/960 = 25 Hz; a stride-2 conv halves it
            "audio_channels": 1,
            "hidden_size": 32,  # real 512
            "num_filters": 2,  # real 64; channels double per stride: 2,4,8,16,32 -> hidden_size
            "num_residual_layers": 1,
            "upsampling_ratios": [8, 6, 5, 4],  # real; product 960
            "kernel_size": 7,
            "last_kernel_size": 3,
            "residual_kernel_size": 3,
            "dilation_growth_rate": 2,
            "use_causal_conv": True,
            "pad_mode": "constant",
            "compress": 2,
            "trim_right_ratio": 1.0,
            "codebook_size": CODEBOOK_SIZE,
            "codebook_dim": 8,  # real 256 (2048 x 256 floats per codebook: far too big here)
            "num_quantizers": 2 * NUM_CODE_GROUPS,  # real 32, of which the first 16 are used
            "use_conv_shortcut": False,
            "vector_quantization_hidden_dimension": 8,  # real 256
            "num_semantic_quantizers": 1,
            "upsample_groups": 32,  # real 512 = hidden_size (depthwise); must divide hidden_size
            "num_hidden_layers": 1,  # real 8
            "intermediate_size": 64,  # real 2048
            "num_attention_heads": 2,  # real 8
            "num_key_value_heads": 2,
            "head_dim": 16,  # real 64
            "hidden_act": "gelu",
            "max_position_embeddings": 8000,
            "norm_eps": 1e-5,
            "use_cache": False,
            "use_streaming": False,
            "rope_theta": 10000.0,
            "sliding_window": 250,
            "layer_scale_initial_scale": 0.01,
        },
        "decoder_config": {  # Qwen3TTSTokenizerV2DecoderConfig
            "codebook_size": CODEBOOK_SIZE,
            "codebook_dim": 8,  # real 512; not an __init__ arg (kwargs) but the decoder reads it;
            # quantizer dimension is codebook_dim // 2
            "hidden_size": 16,  # real 512
            "latent_dim": 16,  # real 1024
            "max_position_embeddings": 8000,
            "rope_theta": 10000,
            "num_attention_heads": 2,  # real 16
            "num_key_value_heads": 2,
            "head_dim": 8,  # real 64
            "attention_bias": False,
            "sliding_window": 72,
            "intermediate_size": 32,  # real 1024
            "hidden_act": "silu",
            "layer_scale_initial_scale": 0.01,
            "rms_norm_eps": 1e-5,
            "num_hidden_layers": 1,  # real 8
            "num_quantizers": NUM_CODE_GROUPS,  # must equal the talker's num_code_groups
            "num_semantic_quantizers": 1,
            "semantic_codebook_size": 4096,  # real value; unused by this decoder class
            "vector_quantization_hidden_dimension": 8,
            "upsample_rates": [8, 5, 4, 3],  # real; with upsampling_ratios: 8*5*4*3*2*2 = 1920
            "upsampling_ratios": [2, 2],
            "decoder_dim": 32,  # real 1536; halved per upsample stage (4 stages) -> 2 channels
            "attention_dropout": 0.0,
        },
    }


# The real generation_config.json (Qwen3-TTS-12Hz-1.7B-*), except max_new_tokens (real 8192).
GENERATION_CONFIG = {
    "do_sample": True,
    "max_new_tokens": MAX_NEW_TOKENS,
    "repetition_penalty": 1.05,
    "subtalker_dosample": True,
    "subtalker_temperature": 0.9,
    "subtalker_top_k": 50,
    "subtalker_top_p": 1.0,
    "temperature": 0.9,
    "top_k": 50,
    "top_p": 1.0,
}


# Codec decoder re-initialisation (see _audible_decoder).
DECODER_INIT_GAIN = 0.5  # x 1/sqrt(fan_in): 0.5 keeps ~30 stacked convs + 12 residual units stable;
# at 0.8 the residual stack saturates (output clipped to +-1), at 0.02 (transformers' default) it dies.
FINAL_CONV_GAIN = 30.0  # lifts the last conv so the waveform lands at std ~0.1, peak ~0.4 (no clipping)


def _audible_decoder(codec) -> None:
    """Give the codec decoder an init under which the waveform depends on the codes and is audible.

    Qwen3TTSTokenizerV2Decoder has no _init_weights of its own, so it gets transformers' default
    N(0, 0.02): the signal then dies through ~30 convs (output ~1e-9, i.e. silence).  torch's own
    reset_parameters() is not it either: its biases and the SnakeBeta DC term swamp the code-dependent
    part (outputs for different codes correlate 0.9999) and the DC offset clips at +-1.  So: variance-
    scaled normal weights, zero biases, and zero-sum taps in the last conv (no DC offset)."""
    import math

    import torch

    dec = codec.decoder
    with torch.no_grad():
        for mod in dec.modules():
            if isinstance(mod, torch.nn.ConvTranspose1d):
                # each output sample sees in_channels * kernel/stride taps
                fan_in = mod.in_channels * mod.kernel_size[0] / mod.stride[0]
            elif isinstance(mod, torch.nn.Conv1d):
                fan_in = mod.in_channels // mod.groups * mod.kernel_size[0]
            elif isinstance(mod, torch.nn.Linear):
                fan_in = mod.in_features
            else:
                continue
            mod.weight.normal_(0.0, DECODER_INIT_GAIN / math.sqrt(fan_in))
            if mod.bias is not None:
                mod.bias.zero_()
        last = dec.decoder[-1].conv  # Conv1d(2 -> 1 channel, kernel 7): the waveform
        last.weight -= last.weight.mean(dim=-1, keepdim=True)
        last.weight *= FINAL_CONV_GAIN


def _randomise_codebooks(module, generator) -> None:
    """Codebooks are zero-initialised buffers/params in both codec halves (Mimi's embed_sum buffer,
    the decoder's embedding_sum); left at zero every frame would quantise to code 0 and every code would
    decode alike.  Fill them so codes depend on the audio and the audio on the codes."""
    import torch

    with torch.no_grad():
        for name, tensor in list(module.named_buffers()) + list(module.named_parameters()):
            if name.endswith("embed_sum") or name.endswith("embedding_sum"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator))


def make_tiny_qwen_checkpoint(out_dir: Path, kind: str = "custom_voice", layout: dict | None = None,
                              device: str = "cpu") -> Path:
    """Write the tiny checkpoint folder into ``out_dir`` (created; existing files overwritten) and
    return it.  ``kind``: "custom_voice" (preset speakers + instruct) or "base" (voice clone).

    ``layout``: sizes to use instead of the tiny ones, merged into each config (keys "talker",
    "speaker_encoder", "speech_tokenizer", "generation"); `bench/full_size.py` gives the released models'
    sizes. ``device``: where the models are built (on a GPU a full-size model builds in seconds; the talker
    is then stored in bfloat16, as released)."""
    if kind not in ("custom_voice", "base"):
        raise ValueError(f"kind must be 'custom_voice' or 'base', not {kind!r}")
    layout = layout or {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # qwen_tts imports torchaudio and sox (via its 25 Hz tokenizer) at import time: import it as the engine does.
    from workers.engines.qwen3 import _import_qwen_tts

    _import_qwen_tts()

    import torch
    from transformers import EncodecFeatureExtractor

    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration
    from qwen_tts.core.models.processing_qwen3_tts import Qwen3TTSProcessor
    from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2Config,
    )
    from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2Model,
    )

    # --- text tokenizer / processor --------------------------------------------------------------
    tokenizer = _build_text_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    # Text embedding rows: every token id, rounded up to a multiple of 64 like Qwen's 151936.
    text_vocab_size = -(-len(tokenizer) // 64) * 64
    Qwen3TTSProcessor(tokenizer=tokenizer).save_pretrained(str(out_dir))

    # --- main model ------------------------------------------------------------------------------
    talker = merged(_talker_config(kind, text_vocab_size), layout.get("talker", {}))
    config = Qwen3TTSConfig(
        talker_config=talker,
        speaker_encoder_config=merged(_speaker_encoder_config(talker["hidden_size"]), layout.get("speaker_encoder", {})),
        tokenizer_type="qwen3_tts_tokenizer_12hz",
        tts_model_size="1b7",  # a str: generate_custom_voice does `tts_model_size in "0b6"`, which
        # raises on None and is True for "" and "0b6" (both drop instruct)
        tts_model_type=kind,
        im_start_token_id=ids["<|im_start|>"],
        im_end_token_id=ids["<|im_end|>"],
        tts_pad_token_id=ids["<tts_pad>"],
        tts_bos_token_id=ids["<tts_text_bos>"],
        tts_eos_token_id=ids["<tts_text_eod>"],
        architectures=["Qwen3TTSForConditionalGeneration"],
    )
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(SEED)
        model = Qwen3TTSForConditionalGeneration(config).eval()
    if device != "cpu":
        model = model.to(torch.bfloat16)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    del model

    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    # Qwen3TTSSpeakerEncoderConfig.__init__ never calls super().__init__ and accepts no **kwargs, so
    # the "model_type": "" it serialises makes Qwen3TTSConfig(**config) raise TypeError on load.
    cfg.get("speaker_encoder_config", {}).pop("model_type", None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    # save_pretrained wrote a transformers GenerationConfig; the real file is the plain dict below
    # (transformers parses it too; the subtalker_* keys become extra attributes).
    generation = merged(GENERATION_CONFIG, layout.get("generation", {}))
    (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")

    # --- speech tokenizer (codec) ----------------------------------------------------------------
    st_dir = out_dir / "speech_tokenizer"
    st_dir.mkdir(exist_ok=True)
    st_config = Qwen3TTSTokenizerV2Config(
        **merged(_speech_tokenizer_config(), layout.get("speech_tokenizer", {})),
        architectures=["Qwen3TTSTokenizerV2Model"],
    )
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(SEED + 1)
        codec = Qwen3TTSTokenizerV2Model(st_config).eval()
        _audible_decoder(codec)
        _randomise_codebooks(codec, torch.Generator().manual_seed(SEED + 2))
    codec.save_pretrained(str(st_dir), safe_serialization=True)
    EncodecFeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        padding_side="right",
        return_attention_mask=True,  # Qwen3TTSTokenizer.encode reads inputs["padding_mask"]
    ).save_pretrained(str(st_dir))
    return out_dir


def merged(base: dict, changes: dict) -> dict:
    """`base` with `changes` laid over it, nested dictionaries merged key by key."""
    result = dict(base)
    for key, value in changes.items():
        result[key] = merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) \
            else value
    return result


def tiny_generation_kwargs() -> dict:
    """Extra kwargs for fast generation beyond the saved generation_config.json: none are needed
    (max_new_tokens=24 is saved).  Sampling stays on, as in the real config, so an (unlikely, ~1/2000
    per frame after the first two) eos can end a call early; seed torch for identical output."""
    return {}


def _main(argv: list[str]) -> int:  # pragma: no cover - manual smoke run
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    t0 = time.perf_counter()
    import numpy as np
    import torch

    from workers.engines.qwen3 import _import_qwen_tts

    Qwen3TTSModel = _import_qwen_tts()

    print(f"import qwen_tts: {time.perf_counter() - t0:.2f}s")
    # Two intra-op threads on this 2-CPU box, shared with other work, make each of the ~100 tiny
    # forward passes per call spin on OpenMP barriers: measured 4.6 s per call vs 0.18 s with 1.
    torch.set_num_threads(1)

    root = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="qwen_tiny_"))
    try:
        for kind in ("custom_voice", "base"):
            t0 = time.perf_counter()
            path = make_tiny_qwen_checkpoint(root / kind, kind)
            build_s = time.perf_counter() - t0
            files = sorted(p for p in path.rglob("*") if p.is_file())
            size = sum(p.stat().st_size for p in files)
            print(f"[{kind}] built in {build_s:.2f}s, {size / 1e6:.2f} MB:")
            for p in files:
                print(f"    {p.relative_to(path)}  {p.stat().st_size}")

            t0 = time.perf_counter()
            tts = Qwen3TTSModel.from_pretrained(str(path), dtype=torch.float32, device_map="cpu")
            print(f"[{kind}] loaded in {time.perf_counter() - t0:.2f}s; "
                  f"speakers={tts.get_supported_speakers()} languages={tts.get_supported_languages()}")
            gen = tiny_generation_kwargs()

            # The hook for "the instruction / reference audio reaches the prompt": every public
            # generate_* call ends in ONE tts.model.generate(**kwargs) call (input_ids, instruct_ids,
            # ref_ids, voice_clone_prompt, languages, speakers, + sampling kwargs).
            calls = []
            real_generate = tts.model.generate

            def spy(*args, **kwargs):
                calls.append(kwargs)
                return real_generate(*args, **kwargs)

            tts.model.generate = spy

            def timed(label, fn, **kw):
                torch.manual_seed(0)
                t = time.perf_counter()
                wavs, sr = fn(**kw, **gen)
                assert isinstance(wavs, list) and len(wavs) == 1, wavs
                w = wavs[0]
                assert isinstance(w, np.ndarray) and w.dtype == np.float32 and w.size > 0, (w.dtype, w.shape)
                assert sr == SAMPLE_RATE, sr
                print(f"[{kind}] {label}: {time.perf_counter() - t:.2f}s, {w.size} samples @ {sr} Hz, "
                      f"peak {float(np.abs(w).max()):.3f}")
                return calls[-1]

            if kind == "custom_voice":
                seen = timed("generate_custom_voice+instruct", tts.generate_custom_voice,
                             text="Hello there.", speaker="aiden", language="english",
                             instruct="Speak slowly and warmly.")
                print(f"    instruct_ids[0] decodes to {tts.processor.decode(seen['instruct_ids'][0][0])!r}")
                print(f"    input_ids[0] tokens {[tts.processor.decode([i]) for i in seen['input_ids'][0][0]]}")
                seen = timed("generate_custom_voice", tts.generate_custom_voice, text="Hello there.",
                             speaker="serena", language="chinese")
                print(f"    instruct_ids={seen['instruct_ids']} speakers={seen['speakers']}")
            else:
                rng = np.random.default_rng(0)
                ref = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)  # 1 s of noise
                t = time.perf_counter()
                items = tts.create_voice_clone_prompt(ref_audio=(ref, SAMPLE_RATE), ref_text="A reference.")
                print(f"[{kind}] create_voice_clone_prompt: {time.perf_counter() - t:.2f}s, "
                      f"ref_code {tuple(items[0].ref_code.shape)}, "
                      f"spk_emb {tuple(items[0].ref_spk_embedding.shape)}")
                seen = timed("generate_voice_clone (icl)", tts.generate_voice_clone, text="Hello there.",
                             language="english", ref_audio=(ref, SAMPLE_RATE), ref_text="A reference.")
                vcp = seen["voice_clone_prompt"]
                print(f"    voice_clone_prompt: ref_code {tuple(vcp['ref_code'][0].shape)}, "
                      f"ref_spk_embedding {tuple(vcp['ref_spk_embedding'][0].shape)}, "
                      f"icl_mode {vcp['icl_mode']}; ref_ids[0] decodes to "
                      f"{tts.processor.decode(seen['ref_ids'][0][0])!r}")
                seen = timed("generate_voice_clone (x_vector_only)", tts.generate_voice_clone,
                             text="Hello there.", language="english", ref_audio=(ref, SAMPLE_RATE),
                             ref_text=None, x_vector_only_mode=True)
                vcp = seen["voice_clone_prompt"]
                print(f"    voice_clone_prompt: ref_code {vcp['ref_code']}, "
                      f"x_vector_only_mode {vcp['x_vector_only_mode']}, ref_ids {seen['ref_ids']}")
                other = (0.3 * np.sin(2 * np.pi * 220 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
                item2 = tts.create_voice_clone_prompt(ref_audio=(other, SAMPLE_RATE), ref_text="A reference.")[0]
                print(f"    another reference audio: ref_code differs "
                      f"{not torch.equal(items[0].ref_code, item2.ref_code)}, spk embedding differs "
                      f"{not torch.allclose(items[0].ref_spk_embedding, item2.ref_spk_embedding)}")
                timed("generate_voice_clone (prompt items)", tts.generate_voice_clone,
                      text="Hello there.", language="english", voice_clone_prompt=items)
    finally:
        if len(argv) <= 1:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
