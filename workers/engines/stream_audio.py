"""When a stream's codec frames become audio, and how much left context each piece is decoded with.

Both stream decoders (`qwen3_stream.py`, `fish_stream.py`) turn frames into audio a few at a time while a sentence
is still being made. Their codecs' decoders are causal, so the samples of frames `start:end` come out right when
they are decoded together with some frames before `start` (the left context, whose samples are then dropped):
the decoder needs no look-ahead, and decoding longer context only costs time. This module holds that arithmetic
once; each decoder says how many frames its first piece and later pieces take, and how much context its codec
needs (which sets how closely the joined pieces match one decode of all frames: each decoder's docstring says).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChunkSchedule:
    """A stream's first piece leaves after `first` frames; each later one once as many frames have gathered as
    were released before it (the listener has that much to play meanwhile), at least `every` and at most
    `largest` (its last piece when it ends, however short). Each piece is decoded with up to `context` frames
    before it, so a piece of n frames costs n + context frames of decoding: pieces that grow keep that overhead
    small once the first audio is out (with Fish's 136 frames of context, pieces of 16 decode 9.5 frames per
    frame heard, pieces of 64 decode 3.1), which is most of a GPU's decoding work at many streams."""

    first: int
    every: int
    context: int
    largest: int

    def wanted(self, decoded: int) -> int:
        """Frames the next piece waits for, `decoded` frames having been released."""
        return self.first if decoded == 0 else min(self.largest, max(self.every, decoded))

    def due(self, decoded: int, ready: int, finished: bool) -> tuple[int, int] | None:
        """The frames `start:end` to turn into audio now, given `decoded` frames already heard and `ready` frames
        made; None while too few have gathered (an ended stream releases whatever it has left)."""
        new = ready - decoded
        if new <= 0 or (new < self.wanted(decoded) and not finished):
            return None
        return decoded, ready

    def window(self, start: int) -> int:
        """The first frame to decode for a piece starting at `start` (its left context begins there)."""
        return max(0, start - self.context)
