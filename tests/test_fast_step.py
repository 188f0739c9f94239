"""The shapes a batched frame step runs at (`workers/engines/row_cache.py`, `fast_step.py`): buckets of rows and
spans of cache columns, each a graph of its own; one token's attention over grouped heads; audio pieces. No engine needed (and torch only for the compiled step)."""

from __future__ import annotations

import logging

import pytest

from workers.engines.fast_step import FastStep
from workers.engines.row_cache import (
    CACHE_SHARE, SMALLEST_SPAN, fit_streams, span_bucket, span_buckets, streams_that_fit,
)


def test_spans_double_from_the_smallest_up_to_the_capacity() -> None:
    assert SMALLEST_SPAN == 512
    assert span_buckets(7168) == [512, 1024, 2048, 4096, 7168], "Fish's cache at S1-mini size, 1,024 new tokens"
    assert span_buckets(2304) == [512, 1024, 2048, 2304]
    assert span_buckets(2048) == [512, 1024, 2048], "a capacity that is itself a span is not listed twice"
    assert span_buckets(300) == [300], "a cache narrower than the smallest span: the whole of it"
    assert span_buckets(2304, None) == [2304], "no smallest span: the whole capacity only"
    assert span_buckets(100, 16) == [16, 32, 64, 100]


def test_a_step_attends_over_the_narrowest_span_holding_its_columns() -> None:
    spans = span_buckets(2304)
    assert [span_bucket(columns, spans) for columns in (1, 512, 513, 1024, 2049, 2304)] == \
        [512, 512, 1024, 1024, 2304, 2304]
    with pytest.raises(ValueError, match="2305 cache columns wanted, the cache holds 2304"):
        span_bucket(2305, spans)


def test_a_compiled_step_attends_over_the_whole_capacity() -> None:
    """Every span is a shape to compile (minutes each with Inductor): a compiled step keeps one; recorded graphs
    and the eager step take the ladder."""
    pytest.importorskip("torch")

    def step() -> None:
        return None

    assert FastStep(step, "compiled", "test", backend="aot_eager", compile_mode=None).spans(7168) == [7168]
    assert FastStep(step, "eager", "test").spans(7168) == [512, 1024, 2048, 4096, 7168]
    assert FastStep(step, "graphs", "test").spans(7168) == [512, 1024, 2048, 4096, 7168]


@pytest.mark.parametrize("additive", [False, True], ids=["bool-mask", "additive-mask"])
def test_one_token_attention_is_grouped_query_attention(additive: bool) -> None:
    """16 query heads over 4 key/value heads, one token per row, each row seeing its own columns: the same as
    copying the keys and values per query head first (transformers' `repeat_kv`, fish-speech's
    `repeat_interleave`), for a boolean mask (Fish) and an additive one (transformers)."""
    torch = pytest.importorskip("torch")
    from workers.engines.row_cache import one_token_attention, visible_columns

    generator = torch.Generator().manual_seed(3)
    query = torch.randn(3, 16, 1, 32, generator=generator)
    keys, values = (torch.randn(3, 4, 64, 32, generator=generator) for _ in range(2))
    visible = visible_columns(torch.tensor([0, 17, 63]), 64)[:, None, None, :]
    mask = torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min) if additive else visible
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, keys.repeat_interleave(4, dim=1), values.repeat_interleave(4, dim=1), attn_mask=mask, scale=0.2)
    got = one_token_attention(query, keys, values, mask, scale=0.2)
    assert got.shape == (3, 16, 1, 32)
    assert torch.allclose(got, expected, atol=1e-6), (got - expected).abs().max()
    assert torch.allclose(got[0], values[0, :, :1].repeat_interleave(4, dim=0), atol=1e-6), \
        "a row at position 0 sees its first column only"


def test_pieces_grow_with_the_audio_already_out() -> None:
    """Fish's schedule: 4 frames first (first audio soon), then as many as were released before, from 16 up to
    64 (each piece re-decodes 136 frames of context: larger later pieces cost less decoding per frame heard); a
    stream that ends releases whatever it has left."""
    from workers.engines.fish_stream import SCHEDULE

    sizes, decoded = [], 0
    while decoded < 300:
        ready = decoded
        while SCHEDULE.due(decoded, ready, finished=False) is None:
            ready += 1
        start, end = SCHEDULE.due(decoded, ready, finished=False)
        assert start == decoded
        sizes.append(end - start)
        decoded = end
    assert sizes[:6] == [4, 16, 20, 40, 64, 64]
    assert SCHEDULE.due(100, 103, finished=True) == (100, 103) and SCHEDULE.due(100, 100, finished=True) is None
    assert SCHEDULE.window(200) == 64 and SCHEDULE.window(30) == 0


# ----- fitting the cache's rows to a GPU's free memory ---------------------------------------------------------

GIB = 2**30


def test_streams_fit_the_free_memory_a_bucket_of_rows_at_a_time() -> None:
    """Rows come a bucket at a time (powers of two) and may take `CACHE_SHARE` of the free memory: a Fish S1-mini
    row (0.82 GB) on a 12 GB card with its weights loaded (~9 GiB free) leaves room for 4 of 8 wanted."""
    row = int(0.82e9)
    assert streams_that_fit(8, row, None) == 8, "not a GPU: nothing fitted"
    assert streams_that_fit(8, row, 75 * GIB) == 8
    assert streams_that_fit(32, row, 75 * GIB) == 32, "32 rows (26 GB) within 60 % of an H100's free memory"
    assert streams_that_fit(8, row, 9 * GIB) == 4
    assert streams_that_fit(5, row, 9 * GIB) == 4, "5 streams use bucket 8's rows, which do not fit"
    assert streams_that_fit(3, row, 9 * GIB) == 3, "bucket 4's rows fit"
    assert streams_that_fit(8, row, 2 * GIB) == 1 and streams_that_fit(8, row, GIB) == 0
    assert streams_that_fit(8, row, 9 * GIB, share=CACHE_SHARE) == 4


def test_fewer_streams_are_said_and_none_is_refused_with_what_to_change(caplog: pytest.LogCaptureFixture) -> None:
    row = int(0.82e9)
    with caplog.at_level(logging.WARNING, logger="workers.engines.row_cache"):
        assert fit_streams("Fish Speech", 8, row, 9 * GIB) == 4
        assert fit_streams("Fish Speech", 8, row, None) == 8 and fit_streams("Fish Speech", 2, row, 9 * GIB) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "Fish Speech keeps 0.76 GiB of key/value cache a stream, 9.0 GiB of GPU memory is free: decoding 4 "
        "streams together, not 8 (LOCKN_GPU_MAX_STREAMS); the other jobs wait their turn"]
    with pytest.raises(RuntimeError, match=r"0\.76 GiB .* 1\.0 GiB of GPU memory is free: not enough for one stream"):
        fit_streams("Fish Speech", 8, row, GIB)
