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
    if fmt in StreamEncoder.CODECS:
        # The very encoder (codec, bit rate) a streamed answer uses: a file answered later from the cache
        # sounds, weighs and lasts the same as the stream that was first heard.
        encoder = StreamEncoder(fmt, sample_rate)
        return encoder.header() + encoder.encode(samples) + encoder.finish()
    container, subtype = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


#: Headroom the limiter leaves: AAC's decoded speech was measured up to 1.36× (+2.7 dB) over its input's peak
#: (CI: 0.891 in, 1.215 out), so −1 dBFS was not enough; −3.5 dBFS keeps that case under full scale.
LIMITER_CEILING_DBFS = -3.5


def limit_peak(pcm: np.ndarray, ceiling_dbfs: float = LIMITER_CEILING_DBFS) -> np.ndarray:
    """`pcm` scaled down so its peak is at most `ceiling_dbfs`: headroom for lossy codecs, whose decoded
    waveform overshoots the input's (an MP3 of audio peaking at full scale decodes past 1.0 and clips)."""
    ceiling = 10 ** (ceiling_dbfs / 20)
    peak = float(np.max(np.abs(pcm))) if pcm.size else 0.0
    return (pcm * (ceiling / peak)).astype(np.float32) if peak > ceiling else pcm


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

    #: format → (container, codec, container options, bit rate): constant bit rates sized for speech.
    CODECS = {"mp3": ("mp3", "libmp3lame", {"write_xing": "0", "id3v2_version": "0"}, 64_000),
              "aac": ("adts", "aac", {}, 64_000), "opus": ("ogg", "libopus", {}, 32_000)}

    def __init__(self, fmt: str, sample_rate: int) -> None:
        if fmt not in STREAMABLE:
            raise ValueError(f"format {fmt!r} cannot be streamed; choose one of {', '.join(STREAMABLE)}")
        self.fmt, self.source_rate = fmt, sample_rate
        self.rate = next((r for r in OPUS_RATES if r >= sample_rate), 48000) if fmt == "opus" else sample_rate
        self._sent = 0
        self._buffer = io.BytesIO()
        self._container = None
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate) \
            if self.rate != sample_rate else None
        if fmt in self.CODECS:
            container, codec, options, bit_rate = self.CODECS[fmt]
            self._container = av.open(self._buffer, mode="w", format=container, options=options)
            self._stream = self._container.add_stream(codec, rate=self.rate, layout="mono")
            self._stream.bit_rate = bit_rate
            self._pts = 0

    def header(self) -> bytes:
        if self.fmt == "wav":
            return _open_ended_wav_header(self.rate)
        return b""

    def encode(self, pcm: np.ndarray) -> bytes:
        samples = self._resampled(as_float_mono(pcm))
        if self._container is None:  # wav, pcm
            return (samples * 32767).astype("<i2").tobytes()
        self._encode_samples(samples)
        return self._drain()

    def finish(self) -> bytes:
        if self._container is None:
            return b""
        tail = self._resampled(None) if self._resampler is not None else np.zeros(0, np.float32)
        self._encode_samples(tail)
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._drain()

    def _resampled(self, samples: np.ndarray | None) -> np.ndarray:
        """Through one resampler for the whole stream (None flushes it): chunks resampled one by one would
        each gain or lose a few samples at their edges, and a stream would not last as long as its file."""
        if self._resampler is None:
            return samples if samples is not None else np.zeros(0, np.float32)
        frame = None
        if samples is not None:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = self.source_rate
        out = [piece.to_ndarray().reshape(-1) for piece in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)

    def _encode_samples(self, samples: np.ndarray) -> None:
        if samples.size:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate, frame.pts = self.rate, self._pts
            self._pts += samples.size
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def _drain(self) -> bytes:
        data = self._buffer.getvalue()[self._sent:]
        self._sent += len(data)
        return data


def _open_ended_wav_header(rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "until the stream ends" (0xFFFFFFFF)."""
    import struct

    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", 0xFFFFFFFF))
