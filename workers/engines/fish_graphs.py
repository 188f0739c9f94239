"""Fish's frame step compiled: on CUDA one CUDA graph per row bucket, so a frame costs a few graph replays.

Eager, a frame is hundreds of small kernels launched one after another (measured on an H200: 14 frames/s for one
stream, the GPU mostly idle). fish-speech's own fast path compiles its `decode_one_token` with
`mode="reduce-overhead"` (CUDA graphs) over a static cache; `FishStreamDecoder.eager_frame_step` is shaped for
the same (fixed shapes per bucket, nothing synced or branched on inside: see `fish_stream.py`), so here it goes
through `torch.compile(mode="reduce-overhead", fullgraph=True, dynamic=False)`: a graph per bucket (1, 2, 4, …),
each compiled and recorded by `FishStreamDecoder.warm_up` before the worker says it is ready.

Failure is never fatal: if compiling or recording raises (at warm-up or later), one log line says why and the
decoder goes on eagerly, the step re-run eagerly (it writes the same cache cells, so re-running is harmless).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
#: Compiled graphs the frame step may keep (dynamo's default is 8): one per bucket up to 64 streams, and again
#: for a cache that had to grow.
RECOMPILE_LIMIT = 16
#: How much of a compiler's (multi-line, often long) message the one log line keeps.
FAILURE_CHARS = 300


class CompiledFrameStep:
    """`eager` (a decoder's `eager_frame_step`) through torch.compile with `backend` and `mode` (inductor and
    reduce-overhead: CUDA graphs; the CPU tests use aot_eager and no mode), falling back to `eager` for good the
    first time the compiled one raises. `failure` says why it fell back (None while compiled)."""

    def __init__(self, eager: Callable[..., Any], backend: str = "inductor",
                 mode: str | None = "reduce-overhead") -> None:
        import torch

        self.torch, self.eager = torch, eager
        dynamo = torch._dynamo.config
        dynamo.recompile_limit = max(dynamo.recompile_limit, RECOMPILE_LIMIT)
        self.compiled = torch.compile(eager, backend=backend, mode=mode, fullgraph=True, dynamic=False)
        self.failure: str | None = None

    def __call__(self, inputs: Any, positions: Any, windows: Any) -> Any:
        if self.failure is None:
            try:
                return self._replay(inputs, positions, windows)
            except Exception as exc:  # noqa: BLE001 - any failure to compile or record: serve eagerly instead
                self.failure = " ".join(f"{type(exc).__name__}: {exc}".split())[:FAILURE_CHARS]  # one line
                log.warning("Fish Speech: the compiled frame step failed (%s); decoding eagerly from now on",
                            self.failure)
        return self.eager(inputs, positions, windows)

    def graph_skips(self) -> int:
        """Graphs inductor compiled without CUDA graphs so far, in this process (its own warning says why: e.g. a
        CPU tensor in the graph, or a non-static input written to); 0 when every bucket got its CUDA graph."""
        from torch._dynamo.utils import counters

        return int(counters["inductor"]["cudagraph_skips"])

    def _replay(self, inputs: Any, positions: Any, windows: Any) -> Any:
        """One compiled step. A new CUDA-graph step begins (the last step's outputs are dead: they were copied
        out), attention is left to the math kernel that inductor fuses (as the package's loop does), and the
        frames are cloned out of the graph's memory, which the next replay overwrites."""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        self.torch.compiler.cudagraph_mark_step_begin()
        with sdpa_kernel(SDPBackend.MATH):
            return self.compiled(inputs, positions, windows).clone()
