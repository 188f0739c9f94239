"""The shapes a batched frame step runs at (`workers/engines/fast_step.py`): buckets of rows and spans of cache
columns, each a graph of its own. No engine needed (and torch only for the compiled step)."""

from __future__ import annotations

import pytest

from workers.engines.fast_step import FastStep, SMALLEST_SPAN, span_bucket, span_buckets


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
