"""Qwen3-TTS's frame step compiled: one CUDA graph per bucket of rows, built while the worker warms up.

Eager, one frame is ~20 small modules per talker layer plus 15 code-predictor passes: a few thousand kernel
launches, each waiting on Python (measured on an H200: RTF 2.3 for one stream of the 1.7B model). The frame
step (`Qwen3StreamDecoder._frame`: code predictor + talker + the next token's draw) has fixed shapes for a given
bucket of rows (`qwen3_fast`), so `torch.compile(mode="reduce-overhead", fullgraph=True, dynamic=False)` turns
it into one CUDA graph per bucket: a frame is one graph replay.

- Warm-up: every bucket up to the worker's `LOCKN_GPU_MAX_STREAMS` is compiled and captured when the first
  prompt arrives (the engine's warm-up sentence, on the batcher's thread, while the worker still says
  "warming"), so no listener waits for a compile.
- A graph's outputs live in memory its next replay overwrites: the step hands back copies.
- If compiling or capturing fails (an op the backend cannot take, an out-of-memory during capture), one log line
  says so and decoding goes on eagerly: slower, never broken.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Graphs dynamo may keep for the one frame function: a bucket each (1 … 32 rows), for each loaded model
#: (CustomVoice and Base share the function's code, hence its cache); dynamo's default is 8.
RECOMPILE_LIMIT = 64
#: Calls per bucket at warm-up: cudagraph trees run a function once eagerly, record it on the next call and
#: replay it from the third.
WARM_CALLS = 3


class CompiledFrame:
    """`frame` (a function of tensors whose shapes depend only on the bucket of rows) through torch.compile;
    eager again, for good, once compiling or running the compiled form fails."""

    def __init__(self, frame: Callable[..., tuple], backend: Any = "inductor", mode: str | None = "reduce-overhead"
                 ) -> None:
        import torch
        import torch._dynamo.config as dynamo_config

        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(dynamo_config, name):
                setattr(dynamo_config, name, max(getattr(dynamo_config, name), RECOMPILE_LIMIT))
        self.frame = frame
        self.graphs = mode == "reduce-overhead"
        options = {"mode": mode} if mode else {}
        self.compiled = torch.compile(frame, backend=backend, fullgraph=True, dynamic=False, **options)
        self.failed: BaseException | None = None

    def __call__(self, *args: Any) -> tuple:
        if self.failed is None:
            try:
                return self._run(*args)
            except Exception as exc:  # noqa: BLE001 - any compile or capture failure: decode eagerly instead
                self.failed = exc
                log.warning("Qwen3-TTS: the compiled frame step failed (%s: %s); decoding eagerly from now on",
                            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return self.frame(*args)

    def _run(self, *args: Any) -> tuple:
        import torch

        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new frame: the last replay's outputs may be reused
        return tuple(output.clone() for output in self.compiled(*args))

    def warm(self, arguments: Callable[[int], tuple], buckets: Iterable[int]) -> None:
        """Compile (and capture) the step for each bucket, with `arguments(bucket)` as its inputs (dummy rows:
        what they compute is thrown away)."""
        for bucket in buckets:
            for _ in range(WARM_CALLS):
                self(*arguments(bucket))
                if self.failed is not None:
                    return


def use_kernel_cache(folder: Path | None) -> None:
    """Keep TorchInductor's compiled kernels in `folder` (the data dir), so a worker's restart reuses them; an
    operator's own TORCHINDUCTOR_CACHE_DIR wins."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder))
