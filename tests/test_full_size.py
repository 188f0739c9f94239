"""`bench.gpu --full-size` builds random checkpoints at the released models' sizes with the tests' builders and
`bench/full_size.py`'s layouts. A GPU builds them in seconds; here the same configs are instantiated on PyTorch's
meta device (shapes, no memory) so a wrong layout fails before anyone spends a GPU lease on it."""

from __future__ import annotations

import dataclasses
import importlib.util
import os

import pytest

needs = [name for name in ("qwen_tts", "fish_speech") if importlib.util.find_spec(name) is None]
if needs:
    if os.environ.get("LOCKN_REQUIRE_QWEN") == "1" or os.environ.get("LOCKN_REQUIRE_FISH") == "1":
        raise RuntimeError(f"{needs} not installed: run `make setup-qwen`")
    pytest.skip(f"{needs} not installed: `make setup-qwen` installs them", allow_module_level=True)


def parameters(module) -> int:  # type: ignore[no-untyped-def]
    return sum(parameter.numel() for parameter in module.parameters())


@pytest.mark.parametrize(("size", "billions"), [("1.7b", 1.917), ("0.6b", 0.906)])
def test_qwen_layouts_have_the_released_sizes(size: str, billions: float) -> None:
    import torch

    from bench.full_size import QWEN_LAYOUTS
    from tests import qwen_tiny
    from workers.engines.qwen3 import _import_qwen_tts

    _import_qwen_tts()
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration
    from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Config
    from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Model

    layout = QWEN_LAYOUTS[size]
    talker = qwen_tiny.merged(qwen_tiny._talker_config("custom_voice", 512), layout["talker"])
    config = Qwen3TTSConfig(talker_config=talker, tokenizer_type="qwen3_tts_tokenizer_12hz", tts_model_size="1b7",
                            tts_model_type="custom_voice")
    codec = Qwen3TTSTokenizerV2Config(**qwen_tiny.merged(qwen_tiny._speech_tokenizer_config(),
                                                         layout["speech_tokenizer"]))
    with torch.device("meta"):
        model, tokenizer = Qwen3TTSForConditionalGeneration(config), Qwen3TTSTokenizerV2Model(codec)
    assert parameters(model) / 1e9 == pytest.approx(billions, rel=0.01)
    assert parameters(tokenizer) / 1e6 == pytest.approx(153.7, rel=0.01)
    assert model.config.talker_config.num_code_groups == 16 == codec.decoder_config.num_quantizers


def test_fish_layout_has_s1_mini_s_size() -> None:
    import base64
    import tempfile
    from pathlib import Path

    import torch

    from bench.full_size import FISH_S1_MINI
    from tests.fish_tiny import special_tokens
    from workers.engines.torchaudio_shim import install_torchaudio_shim

    install_torchaudio_shim()
    from fish_speech.models.text2semantic.llama import DualARModelArgs, DualARTransformer
    from fish_speech.tokenizer import FishTokenizer

    assert set(FISH_S1_MINI) <= {field.name for field in dataclasses.fields(DualARModelArgs)}
    with tempfile.TemporaryDirectory() as folder:
        ranks = Path(folder) / "tokenizer.tiktoken"
        ranks.write_text("".join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256)))
        tokenizer = FishTokenizer(str(ranks), special_tokens())
    with torch.device("meta"):
        model = DualARTransformer(DualARModelArgs(**FISH_S1_MINI), tokenizer=tokenizer)
    assert parameters(model) / 1e6 == pytest.approx(860.2, rel=0.01)
