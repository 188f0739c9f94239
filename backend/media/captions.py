"""Captions from the engine's own sentence chunks: sentence times exact, word times estimated.

The worker speaks a text sentence by sentence, so where each sentence starts and ends in the audio is
known to the sample. Within a sentence, no engine here reports word alignments: each word gets a share of
the sentence's time by its share of the sentence's characters (spaces and punctuation counted with the
word before them), which is what `words_are: "estimated"` says. SRT and VTT are written by the `srt` and
`webvtt-py` libraries, one cue per sentence.

A cue's text is the client's own text, so it is rewritten (`cue_text`) before it reaches any of the three
formats: every run of whitespace (line breaks included) is one space, so a cue is one line and can never hold
a blank line (the cue separator) or a line of its own that reads as an index or a timing line; and an arrow
`-->` (the timing line's mark) becomes `→`. VTT cue text is markup besides, so `&`, `<` and `>` are escaped
there as the WebVTT spec asks. Documents stored before this rule are rewritten as they are served.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import asdict, dataclass
from datetime import timedelta

import srt
import webvtt


#: Any run of whitespace, line breaks included (Unicode's too: `re` with str patterns knows them).
_WHITESPACE = re.compile(r"\s+")
#: The timing line's arrow, and longer ones (`--->`) that end in it.
_ARROW = re.compile(r"-{2,}>")


def cue_text(text: str) -> str:
    """`text` as one caption line: whitespace runs are one space, `-->` is `→` (see the module's docstring)."""
    return _ARROW.sub("→", _WHITESPACE.sub(" ", text).strip())


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def sentence_cues(spoken: list[tuple[str, int]], sample_rate: int, start_sample: int = 0) -> list[Cue]:
    """One cue per (sentence, samples spoken for it), back to back from `start_sample` (0 s by default)."""
    cues, at = [], start_sample
    for text, samples in spoken:
        cues.append(Cue(round(at / sample_rate, 3), round((at + samples) / sample_rate, 3), cue_text(text)))
        at += samples
    return cues


def word_cues(sentence: Cue) -> list[Cue]:
    """The sentence's words, each given the share of its time that its characters are of the sentence's."""
    words = sentence.text.split()
    total = sum(len(word) + 1 for word in words) or 1
    cues, at = [], sentence.start
    for word in words:
        length = (sentence.end - sentence.start) * (len(word) + 1) / total
        cues.append(Cue(round(at, 3), round(at + length, 3), word))
        at += length
    if cues:  # the last word ends with its sentence, whatever the rounding did
        cues[-1] = Cue(cues[-1].start, sentence.end, cues[-1].text)
    return cues


def caption_segment(sentence: Cue) -> dict:
    """A sentence cue with its words (estimated), as one JSON object: `{start, end, text, words: [...]}`."""
    return {**asdict(sentence), "words": [asdict(word) for word in word_cues(sentence)]}


def captions_document(spoken: list[tuple[str, int]], sample_rate: int) -> dict:
    """What a job stores and `captions.json` answers. A sentence that gave no audio (a symbol the voice cannot
    read) has no cue: it takes no time, and SRT's writer would drop it while VTT's kept it."""
    sentences = sentence_cues([(text, samples) for text, samples in spoken if samples], sample_rate)
    return {"sentences_are": "exact", "words_are": "estimated",
            "sentences": [asdict(cue) for cue in sentences],
            "words": [asdict(word) for cue in sentences for word in word_cues(cue)]}


def _sentences(document: dict) -> list[Cue]:
    return [Cue(**cue) for cue in to_json(document)["sentences"]]


def to_json(document: dict) -> dict:
    """The document as every format serves it (a stored one may predate these rules): each sentence's and word's
    text by `cue_text`, and no cue that takes no time."""
    return {**document, **{part: [{**cue, "text": cue_text(cue["text"])} for cue in document[part]
                                  if cue["end"] > cue["start"]] for part in ("sentences", "words")}}


def to_srt(document: dict) -> str:
    return srt.compose([srt.Subtitle(index, timedelta(seconds=cue.start), timedelta(seconds=cue.end), cue.text)
                        for index, cue in enumerate(_sentences(document), start=1)])


def to_vtt(document: dict) -> str:
    captions = webvtt.WebVTT()
    for cue in _sentences(document):
        captions.captions.append(webvtt.Caption(_vtt_time(cue.start), _vtt_time(cue.end),
                                                html.escape(cue.text, quote=False)))
    buffer = io.StringIO()
    captions.write(buffer)
    return buffer.getvalue()


def _vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}.{millis % 1000:03d}"
