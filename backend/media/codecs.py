"""Audio in and out, in one place: PCM → wav/mp3/flac/opus/aac/pcm, and uploads → mono float PCM.

Every codec ships inside a wheel: libsndfile (soundfile) for WAV, FLAC, MP3,
Ogg/Opus and decoding; FFmpeg's libraries (PyAV) for AAC and as the decoder of
last resort. No system ffmpeg is needed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class AudioFormat:
    name: str
    content_type: str
    extension: str


FORMATS: dict[str, AudioFormat] = {
    "wav": AudioFormat("wav", "audio/wav", "wav"),
    "mp3": AudioFormat("mp3", "audio/mpeg", "mp3"),
    "flac": AudioFormat("flac", "audio/flac", "flac"),
    "opus": AudioFormat("opus", "audio/ogg; codecs=opus", "opus"),
    "aac": AudioFormat("aac", "audio/aac", "aac"),
    "pcm": AudioFormat("pcm", "audio/L16", "pcm"),
}
#: The format names, as a type the API's request models validate against (one list: `FORMATS`).
FormatName = Literal[tuple(FORMATS)]  # type: ignore[valid-type]
#: Opus only runs at these rates; anything else is resampled to the next one up.
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
#: Loudness target of `normalize_loudness` (RMS, dBFS) and the peak ceiling it never exceeds.
TARGET_RMS_DBFS = -20.0
PEAK_CEILING_DBFS = -1.0


class AudioDecodeError(ValueError):
    """The bytes are not audio LockN can read; the message says so in words."""


def as_float_mono(pcm: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1], one channel, whatever came in (int16, float64, stereo)."""
    samples = np.asarray(pcm)
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return np.clip(samples, -1.0, 1.0)


def resample(pcm: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling through FFmpeg's swresample (PyAV)."""
    if source_rate == target_rate or pcm.size == 0:
        return pcm
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = source_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def normalize_loudness(pcm: np.ndarray) -> np.ndarray:
    """Bring speech to a steady RMS level without clipping (so voices sound equally loud)."""
    rms = float(np.sqrt(np.mean(np.square(pcm)))) if pcm.size else 0.0
    if rms < 1e-5:
        return pcm
    gain = 10 ** (TARGET_RMS_DBFS / 20) / rms
    peak = float(np.max(np.abs(pcm))) * gain
    ceiling = 10 ** (PEAK_CEILING_DBFS / 20)
    if peak > ceiling:
        gain *= ceiling / peak
    return (pcm * gain).astype(np.float32)


def encode(pcm: np.ndarray, sample_rate: int, fmt: str, *, normalize: bool = False) -> bytes:
    """Encode mono PCM to `fmt` (one of `FORMATS`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unsupported format {fmt!r}; choose one of {', '.join(FORMATS)}")
    samples = as_float_mono(pcm)
    if normalize:
        samples = normalize_loudness(samples)
    if fmt == "pcm":
        return (samples * 32767).astype("<i2").tobytes()
    if fmt == "aac":
        return _encode_with_pyav(samples, sample_rate, "adts", "aac")
    if fmt == "opus":
        rate = next((r for r in OPUS_RATES if r >= sample_rate), OPUS_RATES[-1])
        samples, sample_rate = resample(samples, sample_rate, rate), rate
    container, subtype = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"),
                          "opus": ("OGG", "OPUS")}[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


def _encode_with_pyav(samples: np.ndarray, sample_rate: int, container: str, codec: str) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


class AudioTooLong(AudioDecodeError):
    """The file decodes to more audio than allowed: refused from its header, or as soon as decoding passes it."""


#: Decoding is bounded by samples, not only seconds: `max_seconds` of mono audio at this rate. A file with more
#: channels or a higher rate gets proportionally fewer seconds (8 channels at 192 kHz is 32 times the memory).
BUDGET_RATE = 48_000


def decode(data: bytes, target_rate: int | None = None, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Any wav/mp3/flac/ogg (or anything FFmpeg reads) → (mono float32, rate), optionally resampled.

    With `max_seconds`, a small file that would expand to hours of audio, or to a few seconds of
    many channels at a very high rate (a decompression bomb), is refused before it is decoded
    (libsndfile reads rate, channels and length from the header) or, for formats decoded by FFmpeg,
    as soon as the decoded samples pass the budget.
    """
    try:
        with sf.SoundFile(io.BytesIO(data)) as probe:
            _refuse_larger_than(probe.frames, probe.samplerate, probe.channels, max_seconds)
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        samples, rate = _decode_with_pyav(data, max_seconds)
    samples = as_float_mono(samples)
    if target_rate:
        samples, rate = resample(samples, rate, target_rate), target_rate
    return samples, rate


def _refuse_larger_than(frames: int, rate: int, channels: int, max_seconds: float | None) -> None:
    if max_seconds is None:
        return
    if rate > 0 and frames / rate > max_seconds:
        raise AudioTooLong(f"the file holds over {max_seconds:.0f} s of audio")
    if frames * channels > max_seconds * BUDGET_RATE:
        raise AudioTooLong(f"the file ({channels} channel(s) at {rate} Hz) decodes to more audio than "
                           f"{max_seconds:.0f} s of 48 kHz mono")


def _decode_with_pyav(data: bytes, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    chunks: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate or 48000)
            rate, decoded, channels = resampler.rate, 0, max(1, stream.channels or 1)
            for frame in container.decode(stream):
                for piece in resampler.resample(frame):
                    chunks.append(piece.to_ndarray().reshape(-1))
                    decoded += len(chunks[-1])
                _refuse_larger_than(decoded, rate, channels, max_seconds)
    except AudioTooLong:
        raise
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        raise AudioDecodeError("the file is not audio we can read (use WAV, MP3, FLAC or OGG)") from exc
    if not chunks:
        raise AudioDecodeError("the file contains no audio")
    return np.concatenate(chunks).astype(np.float32), int(rate)


#: Formats `StreamEncoder` can produce chunk by chunk.
STREAMABLE = ("wav", "pcm", "mp3", "aac", "opus")


class StreamEncoder:
    """Encodes PCM chunk by chunk into ONE continuous stream of `fmt`, so audio can be sent as it is made.

    WAV gets a header with an open-ended length (as streaming WAV servers do); MP3, AAC and Opus go
    through one PyAV encoder for the whole stream (no per-chunk headers that would make a decoder stop
    after the first sentence). FLAC is not streamable this way (its header carries the total length):
    `STREAMABLE` says which formats are.
    """

    _CODECS = {"mp3": ("mp3", "libmp3lame", {"write_xing": "0", "id3v2_version": "0"}),
               "aac": ("adts", "aac", {}), "opus": ("ogg", "libopus", {})}

    def __init__(self, fmt: str, sample_rate: int) -> None:
        if fmt not in STREAMABLE:
            raise ValueError(f"format {fmt!r} cannot be streamed; choose one of {', '.join(STREAMABLE)}")
        self.fmt, self.source_rate = fmt, sample_rate
        self.rate = next((r for r in OPUS_RATES if r >= sample_rate), 48000) if fmt == "opus" else sample_rate
        self._sent = 0
        self._buffer = io.BytesIO()
        self._container = None
        if fmt in self._CODECS:
            container, codec, options = self._CODECS[fmt]
            self._container = av.open(self._buffer, mode="w", format=container, options=options)
            self._stream = self._container.add_stream(codec, rate=self.rate, layout="mono")
            self._pts = 0

    def header(self) -> bytes:
        if self.fmt == "wav":
            return _open_ended_wav_header(self.rate)
        return b""

    def encode(self, pcm: np.ndarray) -> bytes:
        samples = as_float_mono(pcm)
        if self.rate != self.source_rate:
            samples = resample(samples, self.source_rate, self.rate)
        if self._container is None:  # wav, pcm
            return (samples * 32767).astype("<i2").tobytes()
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate, frame.pts = self.rate, self._pts
        self._pts += samples.size
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._drain()

    def finish(self) -> bytes:
        if self._container is None:
            return b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._drain()

    def _drain(self) -> bytes:
        data = self._buffer.getvalue()[self._sent:]
        self._sent += len(data)
        return data


def _open_ended_wav_header(rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "until the stream ends" (0xFFFFFFFF)."""
    import struct

    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", 0xFFFFFFFF))
