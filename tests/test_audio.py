"""Encoding to every output format and decoding every upload format, checked by decoding back."""

from __future__ import annotations

import numpy as np
import pytest

from backend.media.codecs import FORMATS, AudioDecodeError, decode, encode, normalize_loudness, resample

RATE = 22050


def tone(seconds: float = 2.0, rate: int = RATE, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "pcm"])
def test_every_format_decodes_back_to_the_same_length_and_level(fmt: str) -> None:
    data = encode(tone(), RATE, fmt)
    samples, rate = decode(data, target_rate=RATE)
    assert abs(len(samples) / RATE - 2.0) < 0.1, fmt
    rms = float(np.sqrt(np.mean(np.square(samples))))
    assert 0.17 < rms < 0.25, (fmt, rms)  # a 0.3 sine has RMS 0.212


def test_pcm_is_raw_little_endian_int16() -> None:
    data = encode(tone(1.0), RATE, "pcm")
    assert len(data) == RATE * 2
    assert abs(int(np.frombuffer(data, "<i2").max()) - int(0.3 * 32767)) < 50


def test_opus_is_resampled_to_a_rate_it_supports() -> None:
    _, rate = decode(encode(tone(), RATE, "opus"))
    assert rate == 24000


def test_loudness_normalisation_levels_quiet_and_loud_speech() -> None:
    quiet, loud = normalize_loudness(tone(amplitude=0.01)), normalize_loudness(tone(amplitude=0.9))
    rms = [float(np.sqrt(np.mean(np.square(x)))) for x in (quiet, loud)]
    assert abs(rms[0] - rms[1]) < 0.01 and max(np.abs(loud)) <= 10 ** (-1 / 20) + 1e-6


def test_decoding_resamples_stereo_to_mono() -> None:
    stereo = np.stack([tone(rate=44100), tone(rate=44100)], axis=1)
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, stereo, 44100, format="WAV")
    samples, rate = decode(buffer.getvalue(), target_rate=RATE)
    assert samples.ndim == 1 and rate == RATE and abs(len(samples) - 2 * RATE) < 100
    assert len(resample(tone(), RATE, 48000)) == pytest.approx(2 * 48000, abs=100)


@pytest.mark.parametrize("data", [b"", b"not audio at all" * 100, b"RIFF\x00\x00\x00\x00WAVEjunk"])
def test_garbage_is_a_clear_decode_error(data: bytes) -> None:
    with pytest.raises(AudioDecodeError, match="not audio|no audio"):
        decode(data)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported format"):
        encode(tone(), RATE, "wma")
