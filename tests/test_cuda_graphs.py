"""`GraphedStep` (workers/engines/cuda_graphs.py): a decoding step replayed from a CUDA graph.

On the CPU it is the step itself. On a GPU (`bash bench/gpu_lease.sh` runs this file there before the benchmark,
without the project's conftest: the machine has no database or broker packages) a replay gives what the eager
step gives, writes its in-place state as the step does, keeps one graph per batch size, and never hands back a
tensor the next replay overwrites.
"""

from __future__ import annotations

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
