"""Speed that means the same on every engine: a pitch-preserving tempo change for engines without their own.

Piper stretches its phonemes itself (`length_scale`); Fish Speech and Qwen3-TTS have no speed control, so
the job runner changes their audio's tempo after synthesis, sentence by sentence, with WSOLA (audiotsm):
the voice keeps its pitch, and `speed` 2.0 takes half the time whichever engine speaks.
"""

from __future__ import annotations

import numpy as np
from audiotsm import wsola
from audiotsm.io.array import ArrayReader, ArrayWriter


def change_tempo(pcm: np.ndarray, speed: float) -> np.ndarray:
    """`pcm` (mono float) played `speed` times as fast at the same pitch, exactly `len(pcm) / speed` samples long.

    WSOLA's output falls short of that by up to one analysis frame (~46 ms at 22 kHz), which on a short
    sentence is several per cent: the end is padded with silence (or trimmed) to the exact length."""
    if speed == 1.0 or pcm.size == 0:
        return pcm
    reader, writer = ArrayReader(pcm.astype(np.float32)[np.newaxis, :]), ArrayWriter(channels=1)
    wsola(channels=1, speed=speed).run(reader, writer)
    stretched = writer.data[0].astype(np.float32)
    length = round(pcm.size / speed)
    return np.pad(stretched, (0, max(0, length - stretched.size)))[:length]
