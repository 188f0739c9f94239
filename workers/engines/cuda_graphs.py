"""A decoding step replayed from a captured CUDA graph: no kernel launches from Python, no compiler.

A batched engine's frame step is hundreds of small kernels (a transformer layer is a dozen, a frame runs dozens of
layers); on a GPU one stream leaves the card mostly idle because Python launches them one by one (seen on an H200:
Fish Speech used 12 GB/s of its 4,300). A CUDA graph records the whole step once and replays it with one launch.
`torch.compile(mode="reduce-overhead")` does the same after compiling the step with Inductor, which costs minutes
per shape at start; `GraphedStep` records the eager kernels as they are, so a worker is ready in seconds.

What a step must be for this (the engines' fixed-shape steps are, and `torch.compile(fullgraph=True)` on the CPU
checks it in their tests): tensors in, tensors out; the same shapes for the same batch size (a fixed-capacity cache,
the batch padded to a size bucket); no reading a tensor's value on the host (`.item()`, `.tolist()`, boolean
indexing); state it changes in place (the key/value cache) never reallocated while its graphs live — `reset()`
forgets them when it is. Random draws are replayed with fresh random numbers (PyTorch registers the generator).

Each distinct signature (the shapes, dtypes and the plain values among the arguments) gets its own graph on first
use, after a few eager warm-up runs on a side stream (as PyTorch's documentation prescribes), all graphs sharing one
memory pool. Off CUDA the step simply runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Eager runs before a capture (lazy initialisations, cuBLAS workspaces, autotuning, kept out of the graph).
WARMUP_RUNS = 2


@dataclass
class _Graph:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: list[Any]  # the static tensors the graph reads (arguments are copied into them)
    output: Any  # what the step returned while recorded; overwritten by every replay


class GraphedStep:
    """`step(*args)` replayed from a CUDA graph per argument signature (see the module's docstring)."""

    def __init__(self, step: Callable[..., Any]) -> None:
        self.step = step
        self._graphs: dict[tuple, _Graph] = {}
        self._pool: Any = None
        #: Graphs recorded so far (what a test or a log reads).
        self.captures = 0

    def __call__(self, *args: Any) -> Any:
        import torch

        if not any(isinstance(arg, torch.Tensor) and arg.is_cuda for arg in args):
            return self.step(*args)
        key = tuple((tuple(arg.shape), arg.dtype) if isinstance(arg, torch.Tensor) else arg for arg in args)
        graph = self._graphs.get(key) or self._capture(key, args)
        for static, arg in zip(graph.inputs, args):
            if static is not None:
                static.copy_(arg)
        graph.graph.replay()
        return clone_outputs(graph.output)  # the next replay overwrites the recorded output

    def reset(self) -> None:
        """Forget every graph (the state they write in place was reallocated)."""
        self._graphs.clear()
        self._pool = None

    def _capture(self, key: tuple, args: tuple) -> _Graph:
        import torch

        inputs = [arg.clone() if isinstance(arg, torch.Tensor) else None for arg in args]
        static_args = [static if static is not None else arg for static, arg in zip(inputs, args)]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self.step(*static_args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: another model's batcher thread (a worker may load Fish and Qwen, or Qwen's two models) may
        # launch kernels while this one records; only this thread's own unsafe calls fail the capture.
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            output = self.step(*static_args)
        self._pool = graph.pool()
        self._graphs[key] = recorded = _Graph(graph, inputs, output)
        self.captures += 1
        return recorded


def clone_outputs(value: Any) -> Any:
    """A copy of a step's output (a tensor, or a tuple or list of them) that no later replay can overwrite."""
    if isinstance(value, (tuple, list)):
        return type(value)(clone_outputs(item) for item in value)
    return value.clone() if hasattr(value, "clone") else value
