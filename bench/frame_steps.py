"""One frame step alone, timed per bucket of streams and span of cache columns (`python -m bench.gpu` prints it).

`bench.gpu` measures what a listener gets (first audio, real-time factor); when a figure disappoints, the first
question is what one frame costs the GPU, apart from prefills, audio decoding and Python. This replays an
engine's frame step on dummy rows (what its warm-up builds: `dummy_step_inputs`), right after the warm-up and
before any stream, for every bucket of rows up to the streams measured, at the narrowest span of cache columns
and at the whole row, on the batcher's own thread (where its graphs were recorded), and reports milliseconds per
frame. Its frames per second, divided by the codec's frame rate (Fish 21.5, Qwen3-TTS 12.5), bounds how many
streams one model can keep in real time at that bucket.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from workers.engines.row_cache import row_buckets

#: Calls before timing (lazy initialisation, a graph's first replay) and calls timed.
UNTIMED_CALLS = 3
TIMED_CALLS = 20


@dataclass(frozen=True)
class FrameStepTiming:
    engine: str
    step: str  # graphs, compiled or eager
    model: str  # the engine's model (Fish: "fish"; Qwen3-TTS: "custom_voice", "base")
    rows: int
    span: int  # cache columns attended over
    ms: float  # per frame, every row advanced


def batchers(engine: Any) -> dict[str, Any]:
    """The engine's `StreamBatcher`s by model (Fish has one; Qwen3-TTS one per loaded model)."""
    if getattr(engine, "batchers", None):
        return {kind: batcher for kind, batcher in engine.batchers.items() if batcher is not None}
    return {"fish": engine.batcher}


def time_frame_steps(engine: Any, name: str, mode: str, max_streams: int) -> list[FrameStepTiming]:
    """Each model's frame step timed at each bucket up to `max_streams` (or the fewer streams its decoder was
    fitted to: `row_cache.fit_streams`), at its narrowest and widest span."""
    timings = []
    for model, batcher in batchers(engine).items():
        decoder = batcher.decoder
        spans = decoder.spans()
        for rows in row_buckets(min(max_streams, decoder.max_streams)):
            for span in sorted({spans[0], spans[-1]}):
                ms = batcher.call(lambda: _time(decoder, rows, span))
                timings.append(FrameStepTiming(name, mode, model, rows, span, round(ms, 2)))
    return timings


def _time(decoder: Any, rows: int, span: int) -> float:
    """Milliseconds per call of `decoder`'s frame step on `rows` dummy rows over `span` columns (device synced)."""
    import torch

    arguments = decoder.dummy_step_inputs(rows, span)
    cuda = decoder.device.type == "cuda"
    with torch.inference_mode():
        for _ in range(UNTIMED_CALLS):
            decoder.frame_step(*arguments)
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(TIMED_CALLS):
            decoder.frame_step(*arguments)
        if cuda:
            torch.cuda.synchronize()
    return (time.perf_counter() - started) * 1000 / TIMED_CALLS


def print_timings(timings: list[FrameStepTiming]) -> None:
    for timing in timings:
        print(f"{timing.engine:<6} {timing.step:<8} frame step {timing.model:<12} {timing.rows:>2} row(s) × "
              f"{timing.span:>5} columns  {timing.ms:8.2f} ms  ({timing.rows * 1000 / timing.ms:8.1f} row-frames/s)",
              flush=True)
