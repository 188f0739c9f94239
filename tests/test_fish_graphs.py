"""Fish's frame step ready for CUDA graphs, checked on the CPU with the tiny random checkpoint:

- fixed shapes (a cache allocated once, the step run over a whole power-of-two bucket of rows, attending over a
  span of the cache's columns or the whole capacity) give the very codes the package's `generate_long` gives, one
  stream or three joining late, as they cross spans;
- the step compiles whole (`fullgraph=True`, `dynamic=False`, backend aot_eager: what the CPU can prove of a graph
  CUDA can record), gives the same codes (greedy; sampled: the same draws from the same seed), and once the
  warm-up has compiled each bucket, never compiles again:
  not over 47 frames of one bucket, nor as streams join, leave and move rows between buckets;
- the only inputs the step writes are the cache's tensors, all at static addresses (what CUDA graphs need to
  write them in place), and what is copied into a graph per step is small;
- a compiler that fails leaves the decoder eager, with one log line, and the codes unchanged;
- the engine with `compile` on compiles every bucket at load, on the batcher's thread (where CUDA graphs must be
  recorded to serve its streams).
Whether the CUDA graphs make it fast is `python -m bench.gpu --full-size`'s question, never a test's.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if importlib.util.find_spec("fish_speech") is None:
    pytest.skip("fish-speech is not installed: `make setup-fish` installs it", allow_module_level=True)

from tests.gpu_serving import record_step_shapes  # noqa: E402
from tests.test_fish_serving import TEXTS, TOKENS, checkpoint, engine, package_codes, request  # noqa: F401, E402

#: Streams decoded together in these tests (buckets 1, 2, 4).
STREAMS = 4


@pytest.fixture(scope="module")
def expected(engine) -> dict:  # noqa: F811 - the fixture imported above
    """The package's own greedy codes for each text, made before anything is compiled (the package's loop sets
    up caches on the shared model)."""
    return {text: package_codes(engine, text).numpy() for text in TEXTS}


@pytest.fixture
def dynamo() -> Iterator[object]:
    """A clean compiler cache (other tests' decoders compile the same function), its settings restored after."""
    import torch

    config = torch._dynamo.config
    saved = config.error_on_recompile, config.recompile_limit
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield torch._dynamo
    config.error_on_recompile, config.recompile_limit = saved
    torch._dynamo.reset()


def new_decoder(fish: Any, compiled: bool = False, backend: object = "aot_eager") -> Any:
    """A decoder of its own over the engine `fish`'s model, for `STREAMS` streams; `compiled`: its frame step
    compiled (as a CUDA engine's, but `backend` instead of inductor and no CUDA graphs)."""
    from workers.engines.fish_stream import FishStreamDecoder

    base = fish.decoder
    decoder = FishStreamDecoder(base.model, base.codec, base.references, TOKENS, base.sampling,
                                max_streams=STREAMS)
    if compiled:
        decoder.use_step("compiled", backend, None)
    return decoder


def decode(decoder: Any, joining: dict[int, str], leaving: dict[int, str] | None = None) -> dict:
    """Step until every stream is done: `joining` {step: text} prefilled at that step, `leaving` {step: text}
    released there unfinished (cancelled, as the batcher does), finished ones released as they end; each step's
    bucket recorded. → {text: its codes}, and the buckets stepped in order."""
    from workers.engines.row_cache import row_bucket as bucket

    joining, leaving = dict(joining), dict(leaving or {})
    active: dict = {}
    codes, sizes, step = {}, [], 0
    while active or joining:
        if step in joining:
            text = joining.pop(step)
            active[text] = decoder.prefill(request(text))
        if step in leaving:
            decoder.release(active.pop(leaving.pop(step)))
        sizes.append(bucket(len(active)))
        for (text, stream), (_chunks, finished) in zip(list(active.items()), decoder.step(list(active.values()))):
            if finished:
                codes[text] = stream.codes().numpy()
                decoder.release(active.pop(text))
        step += 1
    assert decoder._rows == [], "every row was handed back"
    return {"codes": codes, "buckets": sizes}


def cache_tensors(decoder: Any) -> list:
    return [tensor for layer in decoder._cache for tensor in layer]


def test_buckets_are_powers_of_two() -> None:
    from workers.engines.row_cache import row_bucket as bucket
    from workers.engines.row_cache import row_buckets as buckets

    assert [bucket(n) for n in range(1, 10)] == [1, 2, 4, 4, 8, 8, 8, 8, 16]
    assert buckets(1) == [1] and buckets(5) == [1, 2, 4, 8] and buckets(8) == [1, 2, 4, 8]


def test_fixed_shapes_give_the_package_s_codes(engine, expected) -> None:  # noqa: F811
    """One stream, then three joining at steps 0, 5 and 11 (buckets 1 → 2 → 4 → …): every stream's codes are
    the package's, and the cache is the one allocated up front (so a recorded graph's addresses hold)."""
    decoder = new_decoder(engine)
    tensors = cache_tensors(decoder)
    keys = tensors[0]
    assert keys.shape[0] == STREAMS and keys.shape[2] == 2304, "rows for 4 streams; 2048 + 48 columns, rounded up"
    assert decoder.max_streams == STREAMS, "a CPU's memory is not fitted"
    assert decoder.row_bytes(2304) * STREAMS == sum(tensor.nbytes for tensor in tensors), \
        "what a GPU's free memory is held against is what the rows take"
    alone = decode(decoder, {0: TEXTS[0]})
    assert np.array_equal(alone["codes"][TEXTS[0]], expected[TEXTS[0]])
    together = decode(decoder, {0: TEXTS[0], 5: TEXTS[1], 11: TEXTS[2]})
    for text in TEXTS:
        assert np.array_equal(together["codes"][text], expected[text]), text
    assert {1, 2, 4} <= set(together["buckets"])
    assert all(new is old for new, old in zip(cache_tensors(decoder), tensors, strict=True)), "never reallocated"


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_streams_move_between_buckets(engine, expected, dynamo, compiled: bool) -> None:  # noqa: F811
    """Three streams join (buckets 1, 2, 4); the first, in row 0, is cancelled mid-way (the last row moves into
    it, bucket 4 → 2): the other two finish with the package's codes. Compiled, after the warm-up, nothing
    compiles again."""
    decoder = new_decoder(engine, compiled)
    if compiled:
        from workers.engines.row_cache import row_buckets

        decoder.warm_up(row_buckets(STREAMS))
        graphs = dynamo.utils.counters["stats"]["unique_graphs"]
        assert graphs == 3, "one graph per bucket: 1, 2, 4"
        dynamo.config.error_on_recompile = True
    result = decode(decoder, {0: TEXTS[0], 4: TEXTS[1], 9: TEXTS[2]}, leaving={20: TEXTS[0]})
    assert TEXTS[0] not in result["codes"], "the cancelled stream never finished"
    for text in TEXTS[1:]:
        assert np.array_equal(result["codes"][text], expected[text]), text
    assert result["buckets"][:21] == [1] * 4 + [2] * 5 + [4] * 11 + [2], "bucket 4 → 2 when the first left"
    if compiled:
        assert decoder.frame_step.failure is None, "the compiled step served throughout"
        assert dynamo.utils.counters["stats"]["unique_graphs"] == graphs, "no bucket compiled twice"


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_streams_cross_spans_of_cache_columns(engine, expected, dynamo, compiled: bool,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The step attends over the columns its rows have written, rounded up to a span (here from 16 columns, so
    these short prompts cross several as they grow): three streams joining late keep the package's codes, and
    compiled, each (bucket, span) stepped is one graph, built once."""
    from workers.engines.row_cache import span_buckets

    decoder = new_decoder(engine, compiled)
    decoder.frame_step.smallest_span = 16
    assert decoder.spans() == span_buckets(2304, 16)
    shapes = record_step_shapes(monkeypatch)
    result = decode(decoder, {0: TEXTS[0], 5: TEXTS[1], 11: TEXTS[2]})
    for text in TEXTS:
        assert np.array_equal(result["codes"][text], expected[text]), text
    spans = [span for _, span in shapes]
    assert len(set(spans)) >= 2 and max(spans) < 2304, spans
    assert min(spans[spans.index(128):]) < 128, "narrower again once the longest stream has left"
    if compiled:
        assert decoder.frame_step.failure is None
        assert dynamo.utils.counters["stats"]["unique_graphs"] == len(set(shapes)), "a graph per (rows, span)"


def test_the_compiled_step_gives_the_same_codes_and_never_recompiles(engine, expected, dynamo) -> None:  # noqa: F811
    """fullgraph=True, dynamic=False: the step is one graph per bucket (no host sync, no shape that depends on
    data: either would break the graph and raise here). 47 frames of one stream in bucket 1 reuse the first
    frame's graph; the codes are the package's."""
    decoder = new_decoder(engine, compiled=True)
    decoder.warm_up([1])
    dynamo.config.error_on_recompile = True
    result = decode(decoder, {0: TEXTS[1]})
    assert len(result["buckets"]) >= 20 and set(result["buckets"]) == {1}
    assert np.array_equal(result["codes"][TEXTS[1]], expected[TEXTS[1]])
    assert decoder.frame_step.failure is None, "compiled, not fallen back to eager"
    assert dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_a_failing_compiler_leaves_the_decoder_eager(engine, expected, dynamo, caplog) -> None:  # noqa: F811
    """Compiling (or, on CUDA, recording) raises: one log line says so, and the decoder serves eagerly."""

    def broken(graph, inputs):  # type: ignore[no-untyped-def]
        raise RuntimeError("no graphs here")

    decoder = new_decoder(engine, compiled=True, backend=broken)
    with caplog.at_level(logging.WARNING, logger="workers.engines.fast_step"):
        decoder.warm_up([1, 2])
        result = decode(decoder, {0: TEXTS[0]})
    assert "no graphs here" in decoder.frame_step.failure
    assert [record.getMessage() for record in caplog.records if "decoding eagerly" in record.getMessage()] \
        == [f"Fish Speech: the compiled frame step failed ({decoder.frame_step.failure}); decoding eagerly from now on"]
    assert np.array_equal(result["codes"][TEXTS[0]], expected[TEXTS[0]])


def test_the_engine_compiles_every_bucket_at_load_on_the_batcher_s_thread(checkpoint: Path, engine,  # noqa: F811
                                                                          dynamo) -> None:
    """`step="compiled"`: load compiles each bucket up to max_streams before it returns (the
    worker's "warming up"), on the thread that decodes; speaking then compiles nothing and sounds as the eager
    engine does."""
    from workers.engines.fast_step import FastStep
    from workers.engines.fish_speech import FishSpeechEngine

    fish = FishSpeechEngine(checkpoint, device="cpu", max_new_tokens=TOKENS, max_streams=2, greedy=True,
                            step="compiled")
    threads: list[str] = []
    original = FastStep.__call__

    def recording(self, *args):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return original(self, *args)

    FastStep.__call__ = recording  # type: ignore[method-assign]
    try:
        fish.load()
    finally:
        FastStep.__call__ = original  # type: ignore[method-assign]
    assert fish.decoder.frame_step.mode == "compiled" and fish.decoder.frame_step.failure is None
    assert dynamo.utils.counters["stats"]["unique_graphs"] == 2, "buckets 1 and 2 compiled at load"
    assert threads and set(threads) == {"fish"}, "warmed up on the batcher's thread"
    dynamo.config.error_on_recompile = True
    audio = np.concatenate(list(fish.synthesize(TEXTS[2], "fish-default")))
    assert audio.size == (TOKENS - 1) * 2048
    assert np.allclose(audio, np.concatenate(list(engine.synthesize(TEXTS[2], "fish-default"))), atol=1e-5)
    assert fish.decoder.frame_step.failure is None


def test_the_batcher_runs_a_call_on_its_own_thread() -> None:
    """`StreamBatcher.call`: the work runs on the batcher's thread, its result or its error handed back."""
    from workers.engines.stream_batcher import StreamBatcher

    def refuse() -> None:
        raise ValueError("refused")

    batcher = StreamBatcher(decoder=None, max_streams=1, name="calls")  # type: ignore[arg-type]
    assert batcher.call(lambda: threading.current_thread().name) == "calls"
    with pytest.raises(ValueError, match="refused"):
        batcher.call(refuse)
    assert batcher.call(lambda: 42) == 42, "the thread serves on after a failing call"


def test_sampling_compiles_whole_too(engine, dynamo) -> None:  # noqa: F811
    """The package's sampling (repetition penalty, top-p, temperature, exponential-noise draw) is in the graph as
    well, with no host sync: compiled, from the same seed, it draws what the eager step draws."""
    import torch

    from workers.engines.fish_stream import FishSampling, FishStreamDecoder

    base = engine.decoder
    decoders = [FishStreamDecoder(base.model, base.codec, base.references, TOKENS, FishSampling(0.7, 0.8, 1.1))
                for _ in range(2)]
    decoders[1].use_step("compiled", "aot_eager", None)
    compiled = decoders[1].frame_step
    decoders[1].warm_up([1])
    dynamo.config.error_on_recompile = True
    codes = []
    for decoder in decoders:
        torch.manual_seed(7)
        codes.append(decode(decoder, {0: TEXTS[0]})["codes"][TEXTS[0]])
    assert compiled.failure is None
    assert np.array_equal(*codes)


def test_the_step_writes_only_its_static_cache(engine, dynamo) -> None:  # noqa: F811
    """What CUDA graphs need of the inputs (checked in the traced graph, as inductor sees it): the only inputs
    the step writes are the cache's tensors, and all of them have static addresses (so a recorded graph writes
    the cache in place: neither copied in every step nor a reason to skip the graph); all that is copied in per
    step is the step's own inputs: positions, frames, windows (the sampling settings are static too)."""
    import torch
    from torch._dynamo.backends.common import aot_autograd
    from torch._guards import TracingContext

    decoder = new_decoder(engine)
    seen: dict = {}

    def inspect(graph, inputs):  # type: ignore[no-untyped-def]
        metadata = TracingContext.get().fw_metadata
        seen["static"] = set(metadata.static_input_indices)
        seen["written"] = {index for index, info in enumerate(metadata.input_info) if info.mutates_data}
        seen["inputs"] = inputs
        return graph.forward

    step = torch.compile(decoder.eager_frame_step, backend=aot_autograd(fw_compiler=inspect), fullgraph=True,
                         dynamic=False)
    with torch.inference_mode():
        step(*decoder._step_inputs([], 2, decoder.spans()[0]))
    cache = cache_tensors(decoder)  # (the graph sees fake tensors of their shapes)
    written = [tuple(seen["inputs"][index].shape) for index in seen["written"]]
    assert written == [tuple(tensor.shape) for tensor in cache], "the step writes the cache only"
    assert seen["written"] <= seen["static"], "every tensor it writes has a static address"
    copied = [seen["inputs"][index] for index in range(len(seen["inputs"])) if index not in seen["static"]]
    assert sorted(tuple(tensor.shape) for tensor in copied) == [(2,), (2, 11, 1), (2, 11, 16)], \
        "copied in per step: only the positions, the frames read and the penalty's windows"
