"""What the dashboard shows a person, formatted: rate limits as they are written, whole-number chart ticks,
and which of two same-named keys replaced which (issue 17, point 5)."""

from __future__ import annotations

import pytest

from backend.services.keys.service import RateLimit
from state.dashboard import key_lineage, whole_number_ticks


@pytest.mark.parametrize("written", ["60/minute", "10/second", "1000/hour", "5000/day", "120/30s"])
def test_a_rate_limit_reads_as_it_is_written(written: str) -> None:
    assert RateLimit.parse(written).describe() == written


@pytest.mark.parametrize("top, ticks", [(0, [0, 1]), (1, [0, 1]), (3, [0, 1, 2, 3]), (5, [0, 2, 4, 6]),
                                        (40, [0, 10, 20, 30, 40]), (4300, [0, 2000, 4000, 6000])])
def test_chart_ticks_are_whole_and_evenly_spaced(top: int, ticks: list[int]) -> None:
    assert whole_number_ticks(top) == ticks


def test_rotated_keys_say_which_replaced_which() -> None:
    starts = {"key_old": "lk_live_ab…", "key_new": "lk_live_cd…"}
    assert key_lineage(None, "key_new", starts) == "replaced by lk_live_cd…"
    assert key_lineage("key_old", None, starts) == "replaces lk_live_ab…"
    assert key_lineage("key_gone", None, starts) == "replaces an older key"
    assert key_lineage(None, None, starts) == ""
