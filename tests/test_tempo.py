"""The tempo change the job runner applies for engines without a speed control: length exact, pitch kept."""

from __future__ import annotations

import numpy as np
import pytest

from backend.media.tempo import change_tempo
from tests.speed_check import dominant_frequency

RATE = 24000


@pytest.mark.parametrize("speed", [0.25, 0.5, 0.8, 1.0, 1.5, 2.0, 4.0])
def test_tempo_changes_length_exactly_and_keeps_the_pitch(speed: float) -> None:
    t = np.arange(RATE * 2) / RATE
    tone = (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = change_tempo(tone, speed)
    assert out.dtype == np.float32 and out.size == round(tone.size / speed)
    middle = out[out.size // 4: 3 * out.size // 4]  # away from the padded end
    assert abs(dominant_frequency(middle, RATE) - 220) < 5, "same pitch, only faster or slower"
    assert np.abs(out).max() <= 1.0


def test_nothing_to_stretch_is_nothing() -> None:
    assert change_tempo(np.zeros(0, np.float32), 2.0).size == 0
