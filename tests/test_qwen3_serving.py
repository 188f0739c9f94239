"""Qwen3-TTS at serving speed, checked on the CPU with tiny random checkpoints (`tests/qwen_tiny.py`):

- LockN's own decode loop (`workers/engines/qwen3_stream.py`) gives the very codes the package's `generate` gives
  (greedy), so taking the loop over changes nothing a listener hears;
- streams decoded together (continuous batching, `workers/engines/stream_batcher.py`) give the same codes as each
  alone, also when they join at different times;
- the pieces a stream yields join to the package's one-shot decode of the same codes;
- cancelling one of three running streams leaves the other two finishing as they would have;
- a GPU worker with LOCKN_GPU_MAX_STREAMS=4 runs four jobs at once through the real queue.
How fast this is on a GPU is `python -m bench.gpu --full-size`'s question, never a test's.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.gpu_serving import (assert_cancelling_one_leaves_the_others, checkpoint_settings, run_to_end,
                               run_four_jobs_on_one_gpu_worker)

if importlib.util.find_spec("qwen_tts") is None:
    if os.environ.get("LOCKN_REQUIRE_QWEN") == "1":
        raise RuntimeError("LOCKN_REQUIRE_QWEN=1 but qwen-tts is not installed: run `make setup-qwen`")
    pytest.skip("qwen-tts is not installed: `make setup-qwen` installs it", allow_module_level=True)

#: Long enough for a stream to pass LEFT_CONTEXT_FRAMES, so pieces are decoded with truncated context too.
FRAMES = 48
OWNER = "auth0|ada"
TEXTS = ("Hello from LockN.", "A second sentence, rather longer than the first one.", "Third!")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.qwen_tiny import make_tiny_qwen_checkpoint

    return make_tiny_qwen_checkpoint(tmp_path_factory.mktemp("qwen-serving"), "custom_voice")


@pytest.fixture(scope="module")
def engine(checkpoint: Path):
    """A greedy engine (always the likeliest token) that decodes up to four streams together."""
    import torch

    from workers.engines.qwen3 import Qwen3Engine

    torch.set_num_threads(1)
    qwen = Qwen3Engine(checkpoint, device="cpu", max_new_tokens=FRAMES + 1, max_streams=4, greedy=True)
    qwen.load()
    return qwen


@pytest.fixture
def decoder(engine):
    """A decoder of its own over the engine's model, driven step by step by the test (no batcher thread)."""
    from workers.engines.qwen3_stream import Qwen3StreamDecoder

    return Qwen3StreamDecoder(engine._models["custom_voice"], FRAMES + 1, greedy=True)


def request(engine, text: str):  # type: ignore[no-untyped-def]
    from workers.engines.qwen3_stream import QwenRequest

    model = engine._models["custom_voice"]
    return QwenRequest(generate=lambda: model.generate_custom_voice(text=text, speaker="aiden", language="Auto",
                                                                   max_new_tokens=FRAMES + 1))


def test_the_decode_loop_gives_the_package_s_own_codes(engine, decoder) -> None:
    model = engine._models["custom_voice"]
    decoded: list = []
    real = model.model.speech_tokenizer.decode
    model.model.speech_tokenizer.decode = lambda encoded: (decoded.append(encoded[0]["audio_codes"]), real(encoded))[1]
    try:
        for text in TEXTS:
            wavs, _ = model.generate_custom_voice(text=text, speaker="aiden", language="Auto",
                                                  max_new_tokens=FRAMES + 1, do_sample=False, subtalker_dosample=False)
            stream = decoder.prefill(request(engine, text))
            pieces = run_to_end(decoder, [stream])[stream]
            assert stream.codes().shape == decoded[-1].shape == (FRAMES, 4)
            assert np.array_equal(stream.codes().numpy(), decoded[-1].numpy()), text
            assert_joins_to(np.concatenate(pieces), wavs[0])
    finally:
        del model.model.speech_tokenizer.decode


def assert_joins_to(joined: np.ndarray, whole: np.ndarray) -> float:
    """Streamed pieces against one decode of all frames. The tolerance: pieces whose start lies within
    LEFT_CONTEXT_FRAMES of the beginning see all the context the one-shot decode sees and match to float
    rounding; later ones see 25 frames (2 s) of it, as the package's own `chunked_decode` does, and the whole
    stays within 1 % RMS (-40 dB) of the one-shot audio. → that relative RMS difference."""
    from workers.engines.qwen3_stream import LEFT_CONTEXT_FRAMES

    assert joined.shape == whole.shape
    exact = LEFT_CONTEXT_FRAMES * 1920
    assert np.allclose(joined[:exact], whole[:exact], atol=1e-5)
    relative = float(np.sqrt(np.mean((joined - whole) ** 2)) / np.sqrt(np.mean(whole ** 2)))
    assert relative < 0.01
    return relative


def test_three_streams_together_give_the_same_codes_as_each_alone(engine, decoder) -> None:
    alone = []
    for text in TEXTS:
        stream = decoder.prefill(request(engine, text))
        run_to_end(decoder, [stream])
        alone.append(stream.codes())
    together = [decoder.prefill(request(engine, text)) for text in TEXTS]
    run_to_end(decoder, together)
    for stream, codes in zip(together, alone):
        assert np.array_equal(stream.codes().numpy(), codes.numpy())
    # Continuous batching: a stream that joins at step 5 and one at step 11, while the first is mid-way.
    first, second, third = (decoder.prefill(request(engine, text)) for text in TEXTS)
    run_to_end(decoder, [first], joining={5: second, 11: third})
    for stream, codes in zip((first, second, third), alone):
        assert np.array_equal(stream.codes().numpy(), codes.numpy())


def test_streams_arriving_together_are_prefilled_in_one_pass_as_each_alone(engine, decoder) -> None:
    """`prefill_many`: prompts of different lengths through the talker in one pass, padded on the right; each
    stream then makes the codes it makes alone. A request whose prompt cannot be built is its own error, in its
    place."""
    from workers.engines.qwen3_stream import QwenRequest

    alone = {}
    for text in TEXTS:
        stream = decoder.prefill(request(engine, text))
        run_to_end(decoder, [stream])
        alone[text] = stream.codes()

    def broken() -> None:
        raise ValueError("this prompt cannot be built")

    passes: list = []
    talker = decoder.talker.model
    forward = talker.forward
    talker.forward = lambda **kwargs: (passes.append(tuple(kwargs["inputs_embeds"].shape)), forward(**kwargs))[1]
    try:
        started = decoder.prefill_many([request(engine, TEXTS[0]), QwenRequest(generate=broken),
                                        request(engine, TEXTS[1]), request(engine, TEXTS[2])])
    finally:
        del talker.forward
    assert len(passes) == 1 and passes[0][0] == 3, "one pass, three prompts"
    assert isinstance(started[1], ValueError)
    streams = [started[0], started[2], started[3]]
    assert len({stream.length for stream in streams}) == 3, "prompts of different lengths"
    run_to_end(decoder, streams)
    for stream, text in zip(streams, TEXTS):
        assert np.array_equal(stream.codes().numpy(), alone[text].numpy()), text


def test_streamed_pieces_join_to_the_one_shot_decode(engine, decoder) -> None:
    """Every piece is decoded with up to 25 frames before it; joined, they are the package's one decode of all."""
    from workers.engines.qwen3_stream import FIRST_CHUNK_FRAMES

    stream = decoder.prefill(request(engine, TEXTS[1]))
    pieces = run_to_end(decoder, [stream])[stream]
    assert len(pieces) >= 5 and pieces[0].size == FIRST_CHUNK_FRAMES * 1920
    joined, whole = np.concatenate(pieces), decoder.decode_all(stream)
    assert whole.shape == (FRAMES * 1920,)
    relative = assert_joins_to(joined, whole)
    print(f"streamed vs one-shot: {len(pieces)} pieces, RMS difference {100 * relative:.3f} % of the signal")


def test_cancelling_one_of_three_streams_leaves_the_others_finishing(engine) -> None:
    assert_cancelling_one_leaves_the_others(engine, engine.batchers["custom_voice"], "qwen3-aiden", TEXTS)


def test_a_request_the_engine_refuses_fails_alone(engine) -> None:
    """One stream's bad input (here an instruction the tokenizer cannot take) never disturbs the others."""
    from workers.engines.qwen3_stream import QwenRequest

    batcher = engine.batchers["custom_voice"]

    def broken() -> None:
        raise ValueError("this prompt cannot be built")

    results: dict = {}
    good = threading.Thread(target=lambda: results.setdefault("good", list(engine.synthesize(TEXTS[0], "qwen3-aiden"))))
    good.start()
    with pytest.raises(ValueError, match="cannot be built"):
        list(batcher.stream(QwenRequest(generate=broken)))
    good.join(timeout=300)
    assert np.concatenate(results["good"]).size > 0


# ----- through the real queue --------------------------------------------------------------------------


def test_a_gpu_worker_runs_four_jobs_at_once(checkpoint: Path, embedded_broker, database,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """LOCKN_GPU_MAX_STREAMS=4: four Qwen3 jobs at once on one worker, one model decoding them together."""
    run_four_jobs_on_one_gpu_worker("qwen3", "qwen3-aiden", checkpoint_settings("QWEN", checkpoint), monkeypatch)


def test_the_engine_describes_the_streams_it_decodes_together(engine) -> None:
    """What the worker's heartbeat carries to the status card: four streams at once, as asked (a CPU's memory is
    not fitted)."""
    info = engine.describe()
    assert (info.streams, info.streams_asked) == (4, 4)
