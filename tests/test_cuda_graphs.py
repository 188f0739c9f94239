"""`GraphedStep` (workers/engines/cuda_graphs.py): a decoding step replayed from a CUDA graph.

On the CPU it is the step itself. On a GPU (`bash bench/gpu_lease.sh` runs this file there before the benchmark,
without the project's conftest: the machine has no database or broker packages) a replay gives what the eager
step gives, writes its in-place state as the step does, keeps one graph per batch size, and never hands back a
tensor the next replay overwrites.
"""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")

from workers.engines.cuda_graphs import GraphedStep  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


class ToyDecoder:
    """A frame step shaped like the engines': per-row positions into a fixed-capacity cache written in place, an
    attention-like read over the whole cache under a mask, and a draw."""

    def __init__(self, device: str, rows: int = 8, capacity: int = 64, width: int = 32) -> None:
        generator = torch.Generator().manual_seed(7)
        self.weight = torch.randn(width, width, generator=generator).to(device)
        self.cache = torch.zeros(rows, capacity, width, device=device)

    def step(self, inputs, positions):  # type: ignore[no-untyped-def]
        rows = torch.arange(inputs.shape[0], device=inputs.device)
        hidden = torch.tanh(inputs @ self.weight)
        self.cache[rows, positions] = hidden
        mask = torch.arange(self.cache.shape[1], device=inputs.device)[None, :] <= positions[:, None]
        keys = self.cache[:inputs.shape[0]]
        scores = torch.einsum("bw,bcw->bc", hidden, keys).masked_fill(~mask, float("-inf"))
        mixed = torch.einsum("bc,bcw->bw", scores.softmax(-1), keys)
        return mixed, mixed.argmax(dim=-1)


def test_off_cuda_the_step_simply_runs() -> None:
    toy = ToyDecoder("cpu")
    graphed = GraphedStep(toy.step)
    inputs, positions = torch.ones(2, 32), torch.tensor([0, 3])
    mixed, best = graphed(inputs, positions)
    assert graphed.captures == 0
    assert torch.equal(best, toy.step(inputs, positions)[1])


@cuda
def test_a_replay_gives_the_eager_step_s_results_and_writes_its_state() -> None:
    eager, graphed_toy = ToyDecoder("cuda"), ToyDecoder("cuda")
    graphed = GraphedStep(graphed_toy.step)
    generator = torch.Generator().manual_seed(1)
    for frame in range(12):
        for rows in (4, 2, 4):  # two batch sizes, interleaved: one graph each
            inputs = torch.randn(rows, 32, generator=generator).cuda()
            positions = torch.full((rows,), frame, device="cuda")
            expected = eager.step(inputs, positions)
            got = graphed(inputs, positions)
            assert torch.allclose(got[0], expected[0], atol=1e-5) and torch.equal(got[1], expected[1])
    assert graphed.captures == 2
    assert torch.allclose(graphed_toy.cache, eager.cache, atol=1e-5), "the cache was written as the eager step does"


@cuda
def test_an_output_survives_the_next_replay() -> None:
    graphed = GraphedStep(ToyDecoder("cuda").step)
    first = graphed(torch.ones(2, 32, device="cuda"), torch.tensor([0, 0], device="cuda"))[0]
    kept = first.clone()
    graphed(torch.full((2, 32), -3.0, device="cuda"), torch.tensor([1, 1], device="cuda"))
    assert torch.equal(first, kept)


# ----- both engines, each mode: what the lease checks on a GPU before it measures ----------------------------------

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TEXT = "LockN replays its frames from recorded graphs."
#: Codec frames per sentence: past two of Fish's pieces and three of Qwen's.
FRAMES = 24


def _speak(engine, voice: str):  # type: ignore[no-untyped-def]
    import numpy as np

    return np.concatenate(list(engine.synthesize(TEXT, voice)))


def _fish(folder, step: str, precision=None):  # type: ignore[no-untyped-def]
    from workers.engines.fish_speech import FishSpeechEngine

    engine = FishSpeechEngine(folder, device=DEVICE, max_new_tokens=FRAMES, step=step, max_streams=2, greedy=True,
                              precision=precision)
    engine.load()
    return engine


def _qwen(folder, step: str, precision=None):  # type: ignore[no-untyped-def]
    from workers.engines.qwen3 import Qwen3Engine

    engine = Qwen3Engine(folder, None, device=DEVICE, max_new_tokens=FRAMES, step=step, max_streams=2, greedy=True,
                         precision=precision)
    engine.load()
    engine.warm_up()
    return engine


def _tiny(name: str, folder):  # type: ignore[no-untyped-def]
    """A tiny checkpoint of engine `name` made in `folder` → (its folder, the engine's builder, a voice)."""
    if importlib.util.find_spec("fish_speech" if name == "fish" else "qwen_tts") is None:
        pytest.skip(f"{name} is not installed (make setup-qwen installs both)")
    if name == "fish":
        from tests.fish_tiny import make_tiny_checkpoint

        make_tiny_checkpoint(folder)
        return folder, _fish, "fish-default"
    from tests.qwen_tiny import make_tiny_qwen_checkpoint

    return make_tiny_qwen_checkpoint(folder, "custom_voice"), _qwen, "qwen3-aiden"


def _batcher(engine):  # type: ignore[no-untyped-def]
    """The thread that decodes the engine's streams (Qwen: its CustomVoice model's)."""
    return engine.batcher if engine.name == "fish" else engine.batchers["custom_voice"]


@pytest.mark.parametrize("name", ["fish", "qwen3"])
def test_each_engine_speaks_the_same_from_graphs_as_eagerly(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Greedy, the same sentence through an eager engine and one whose frame step is replayed from CUDA graphs
    (on a CPU `graphs` is the eager step: the test then checks itself): the same audio, no fallback, and on a GPU
    a graph recorded for each bucket (1 and 2 streams) at each span of cache columns."""
    import numpy as np

    folder, build, voice = _tiny(name, tmp_path)
    eager = build(folder, "eager")
    graphed = build(folder, "graphs")
    decoder = _batcher(graphed).decoder
    step = decoder.frame_step
    heard, expected = _speak(graphed, voice), _speak(eager, voice)
    assert step.mode == "graphs" and step.failure is None, step.failure
    assert heard.shape == expected.shape and heard.size > 0
    assert np.allclose(heard, expected, atol=1e-3), float(np.abs(heard - expected).max())
    if DEVICE == "cuda":
        assert step.fast.captures == 2 * len(decoder.spans()), "a graph for each bucket and span, recorded at warm-up"


@pytest.mark.parametrize("name", ["fish", "qwen3"])
def test_each_engine_speaks_together_in_bfloat16(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In the GPU's precision (bfloat16), on a CPU too, so that a change which breaks it (a tensor made in
    float32 beside a bfloat16 one, a mask that cannot hold a position) shows in CI, not at the next GPU lease:
    three sentences arriving at once are prefilled and decoded together, the cache is bfloat16, and every
    sentence is heard whole (its frames' samples, finite, not silent). Measured on the tiny Fish checkpoint:
    prefilled together or alone, a prompt's keys differ by at most one bfloat16 step (different attention
    lengths round differently), so codes are held equal to each alone only in float32 (the serving tests)."""
    import numpy as np

    from tests.gpu_serving import speak_in_threads

    folder, build, voice = _tiny(name, tmp_path)
    engine = build(folder, "auto", precision=torch.bfloat16)
    batcher = _batcher(engine)
    texts = (TEXT, "A second sentence, a little longer than the first one.", "Third!")
    heard = speak_in_threads(engine, voice, texts)
    decoder = batcher.decoder
    keys, frame_samples = ((decoder._cache[0][0], decoder.frame_samples) if name == "fish"
                           else (decoder.cache.layers[0][0], decoder.upsample))
    assert keys.dtype == torch.bfloat16 and keys.device.type == DEVICE
    assert batcher.peak_streams >= 2, "decoded together"
    assert sorted(heard) == sorted(texts)
    for text, audio in heard.items():
        assert audio.dtype == np.float32 and np.isfinite(audio).all() and np.abs(audio).max() > 0, text
        assert audio.size >= 8 * frame_samples, text


@cuda
def test_the_free_memory_rows_are_fitted_to_counts_what_the_allocator_holds_unused() -> None:
    """`row_cache.free_device_bytes`: the card's free memory, less what this process holds, plus what PyTorch's
    allocator keeps cached after a tensor is gone (an earlier model's codec calls leave such blocks)."""
    from workers.engines.row_cache import free_device_bytes

    block = 512 * 2**20
    before = free_device_bytes("cuda")
    assert 0 < before <= torch.cuda.get_device_properties(0).total_memory
    held = torch.empty(block, dtype=torch.uint8, device="cuda")
    assert free_device_bytes("cuda") <= before - block + 2**20
    del held
    assert free_device_bytes("cuda") >= before - 2**20, "the cached block counts as free again"
