"""One check of "speed means the same on every engine", run by each engine's own test module on its engine."""

from __future__ import annotations

import importlib.util

import numpy as np

from backend.media.engine import Engine, ReferenceVoice, SynthesisOptions
from backend.services.jobs.runner import sentence_audio


def durations_at(engine: Engine, sentence: str, voice: str | ReferenceVoice,
                 speeds: tuple[float, ...] = (1.0, 0.5, 2.0), runs: int = 3) -> dict[float, float]:
    """Mean seconds of audio the job runner makes of `sentence` at each speed. Each call starts from the same
    torch seed, so the engines that sample with torch (Fish Speech, Qwen3-TTS) say the same thing at every
    speed; Piper's own noise (±2.5 % in length, not seedable) is what the mean of `runs` calls evens out. Piper
    needs no torch: a plain `make setup` has none, and then there is no seed to set."""
    rate = engine.describe().sample_rate
    seconds = {}
    for speed in speeds:
        lengths = []
        for _ in range(runs):
            _seed_torch(1234)
            lengths.append(sentence_audio(engine, sentence, voice, SynthesisOptions(speed=speed)).size / rate)
        seconds[speed] = float(np.mean(lengths))
    return seconds


def _seed_torch(seed: int) -> None:
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.manual_seed(seed)


def assert_speed_scales_duration(engine: Engine, sentence: str, voice: str | ReferenceVoice) -> dict[float, float]:
    """Speed 0.5 takes twice as long and 2.0 half as long (±10 %), and the voice keeps its pitch."""
    seconds = durations_at(engine, sentence, voice)
    assert seconds[1.0] > 0
    assert abs(seconds[0.5] / seconds[1.0] - 2.0) <= 0.2, seconds
    assert abs(seconds[2.0] / seconds[1.0] - 0.5) <= 0.05, seconds
    return seconds


def dominant_frequency(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
    return float(np.fft.rfftfreq(pcm.size, 1 / rate)[int(np.argmax(spectrum))])
