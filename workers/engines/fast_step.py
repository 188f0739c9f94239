"""How a batched engine runs its frame step on a GPU: replayed from CUDA graphs, compiled, or eagerly.

Eager, one frame of Fish Speech or Qwen3-TTS is a few thousand small kernels, each launched from Python (measured
on an H200: Fish 14 frames/s for one stream, Qwen3-TTS 1.7B RTF 2.3, the card mostly idle). Both decoders shape
their frame step for replay (`FishStreamDecoder.eager_frame_step`, `Qwen3StreamDecoder._frame`): fixed shapes for
each bucket of rows (1, 2, 4, … streams: `row_cache.row_bucket`), the cache allocated once and written in place,
nothing read back on the host inside. `FastStep` then runs it in one of three modes, `LOCKN_GPU_STEP`:

- `graphs` (what `auto` picks on CUDA): the eager kernels recorded once per bucket and replayed with one launch
  (`cuda_graphs.GraphedStep`): ready in seconds, no compiler;
- `compiled`: `torch.compile(mode="reduce-overhead", fullgraph=True, dynamic=False)`: Inductor fuses the kernels
  and records CUDA graphs of them (fish-speech's own fast path), at the price of minutes of compiling per bucket
  at the first start (kept in `data/torch-compile` for the next: `use_kernel_cache`); on a CPU it traces with
  `aot_eager` (what the tests use to prove the step is one whole graph);
- `eager`: the step as written (what `auto` picks on a CPU).

Attention reads only the cache columns the rows have written, rounded up to a span (`row_cache.span_buckets`).
Each (bucket, span) is its own graph; a compiled step attends over the whole capacity (one span), since each
shape would cost minutes of compiling.

Every bucket up to `LOCKN_GPU_MAX_STREAMS`, at every span, is built by the decoder's warm-up, on the batcher's
thread, while the worker says "warming up". Failure is never fatal: the first time recording, compiling or replaying raises, one
log line says why and the step runs eagerly from then on (re-running a step writes the same cache cells).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

from workers.engines.cuda_graphs import GraphedStep, clone_outputs
from workers.engines.row_cache import SMALLEST_SPAN, span_buckets

log = logging.getLogger(__name__)

StepMode = Literal["auto", "graphs", "compiled", "eager"]
#: Graphs dynamo may keep for one step function (its default is 8): a bucket each up to 32 rows, for each model
#: sharing the function's code (Qwen's CustomVoice and Base).
RECOMPILE_LIMIT = 64
#: Calls per bucket at warm-up: cudagraph trees run a function once eagerly, record it on the next call and replay
#: it from the third (a `GraphedStep` records on its first).
WARM_CALLS = 3
#: How much of a compiler's (multi-line, often long) message the one log line keeps.
FAILURE_CHARS = 300


def resolve_mode(mode: StepMode, device: str) -> str:
    """`auto`: CUDA graphs on a CUDA device, eager elsewhere (a CPU has no graphs to replay)."""
    if mode == "auto":
        return "graphs" if device.startswith("cuda") else "eager"
    return mode


class FastStep:
    """`eager` (a decoder's frame step) run as `mode` ("graphs", "compiled" or "eager"); for good eagerly after the
    first failure, which `failure` then names. `engine` names the engine in the log line; `backend` and
    `compile_mode` are torch.compile's (inductor and reduce-overhead on CUDA; the CPU tests pass aot_eager and
    None); `context` wraps each compiled call (Fish's math attention, which Inductor fuses). `smallest_span`:
    the narrowest span of cache columns the step attends over (`spans`), None for the whole capacity only (what
    a compiled step does: every span would be minutes more of compiling)."""

    def __init__(self, eager: Callable[..., Any], mode: str, engine: str, backend: Any = "inductor",
                 compile_mode: str | None = "reduce-overhead",
                 context: Callable[[], AbstractContextManager] = nullcontext) -> None:
        self.eager, self.mode, self.engine, self.context = eager, mode, engine, context
        self.failure: str | None = None
        self.smallest_span: int | None = None if mode == "compiled" else SMALLEST_SPAN
        self._marks_steps = mode == "compiled" and compile_mode == "reduce-overhead"
        self.fast: Callable[..., Any] | None = None
        if mode == "compiled":
            self.fast = _compiled(eager, backend, compile_mode)
        elif mode == "graphs":
            self.fast = GraphedStep(eager)
        elif mode != "eager":
            raise ValueError(f"unknown frame step mode {mode!r}: graphs, compiled or eager")

    def __call__(self, *args: Any) -> Any:
        if self.fast is not None and self.failure is None:
            try:
                return self._run(*args)
            except Exception as exc:  # noqa: BLE001 - any failure to record, compile or replay: serve eagerly
                self.failure = " ".join(f"{type(exc).__name__}: {exc}".split())[:FAILURE_CHARS]  # one line
                log.warning("%s: the %s frame step failed (%s); decoding eagerly from now on", self.engine,
                            self.mode, self.failure)
        return self.eager(*args)

    def _run(self, *args: Any) -> Any:
        if self._marks_steps:  # a new frame: the last replay's outputs are dead (they were copied out)
            import torch

            torch.compiler.cudagraph_mark_step_begin()
        with self.context():
            output = self.fast(*args)  # type: ignore[misc]
        # A compiled graph's outputs live in memory its next replay overwrites; a GraphedStep copies its own.
        return output if self.mode == "graphs" else clone_outputs(output)

    def spans(self, capacity: int) -> list[int]:
        """The spans of a `capacity`-column cache this step attends over (`span_buckets`)."""
        return span_buckets(capacity, self.smallest_span)

    def warm(self, arguments: Callable[[int, int], tuple], buckets: Sequence[int], spans: Sequence[int]) -> float:
        """Build each bucket of rows at each span now (`arguments(bucket, span)`: inputs of dummy rows, whose
        results are thrown away), with one log line saying how long it took; → seconds taken. Eager: nothing to
        build."""
        if self.fast is None:
            return 0.0
        started, skipped = time.perf_counter(), self.graph_skips()
        for bucket in buckets:
            for span in spans:
                for _ in range(WARM_CALLS):
                    self(*arguments(bucket, span))
                    if self.failure is not None:
                        return time.perf_counter() - started
        seconds = time.perf_counter() - started
        skips = self.graph_skips() - skipped
        log.info("%s: %s frame step built for %s stream(s) at once × %s cache columns in %.1f s%s", self.engine,
                 self.mode, ", ".join(map(str, buckets)), ", ".join(map(str, spans)), seconds,
                 f"; {skips} compiled without CUDA graphs (Inductor's warning says why)" if skips else "")
        return seconds

    def forget_graphs(self) -> None:
        """The state the step writes in place was reallocated: recorded CUDA graphs would write the old memory."""
        reset = getattr(self.fast, "reset", None)
        if reset is not None:
            reset()

    def graph_skips(self) -> int:
        """Graphs Inductor compiled without CUDA graphs so far in this process (its own warning says why); 0 for
        the modes that compile nothing (no need to load the compiler's counters for them)."""
        if self.mode != "compiled":
            return 0
        from torch._dynamo.utils import counters

        return int(counters["inductor"]["cudagraph_skips"])


def step_options(mode: StepMode, device: str, kernel_cache: Path | None) -> tuple[str, Any, str | None]:
    """`FastStep`'s mode, backend and compile mode for a decoder on `device` (Inductor and CUDA graphs on CUDA;
    `aot_eager`, which traces but compiles nothing, on a CPU); a compiled step keeps its kernels in `kernel_cache`."""
    mode = resolve_mode(mode, device)
    if mode == "compiled":
        use_kernel_cache(kernel_cache)
    cuda = device.startswith("cuda")
    return mode, "inductor" if cuda else "aot_eager", "reduce-overhead" if cuda else None


def use_kernel_cache(folder: Path | None) -> None:
    """Keep TorchInductor's compiled kernels in `folder` (the data dir), so a worker's restart reuses them; an
    operator's own TORCHINDUCTOR_CACHE_DIR wins."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder))


def _compiled(eager: Callable[..., Any], backend: Any, compile_mode: str | None) -> Callable[..., Any]:
    import torch
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), RECOMPILE_LIMIT))
    options = {"mode": compile_mode} if compile_mode else {}
    return torch.compile(eager, backend=backend, fullgraph=True, dynamic=False, **options)
