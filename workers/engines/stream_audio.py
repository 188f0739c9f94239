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
    """A stream's first piece leaves after `first` frames, later ones every `every` frames (its last piece when
    it ends, however short); each piece is decoded with up to `context` frames before it."""

    first: int
    every: int
    context: int

    def due(self, decoded: int, ready: int, finished: bool) -> tuple[int, int] | None:
        """The frames `start:end` to turn into audio now, given `decoded` frames already heard and `ready` frames
        made; None while too few have gathered (an ended stream releases whatever it has left)."""
        new = ready - decoded
        wanted = self.first if decoded == 0 else self.every
        if new <= 0 or (new < wanted and not finished):
            return None
        return decoded, ready

    def window(self, start: int) -> int:
        """The first frame to decode for a piece starting at `start` (its left context begins there)."""
        return max(0, start - self.context)
