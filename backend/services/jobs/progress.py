"""A job's progress in words a person reads ("waiting for a worker", "speaking sentence 3 of 7"), not raw status.

The worker splits the text with `split_sentences` and reports `chars_done` as the length of the sentences it has
finished (`job_runner._speak`): the same split here tells which sentence it is on.
"""

from __future__ import annotations

from itertools import accumulate

from backend.media.engine import split_sentences


def sentence_position(text: str, chars_done: int) -> tuple[int, int]:
    """(the sentence being spoken, counted from 1; how many there are) after `chars_done` finished characters."""
    sentences = split_sentences(text) or [text]
    finished = sum(1 for end in accumulate(len(s) for s in sentences) if end <= chars_done)
    return min(finished + 1, len(sentences)), len(sentences)


def progress_words(status: str, text: str, chars_done: int, error: str | None = None) -> str:
    """What the Studio says about a job in `status`."""
    if status == "queued":
        return "waiting for a worker"
    if status == "running":
        at, of = sentence_position(text, chars_done)
        return f"speaking sentence {at} of {of}"
    if status == "succeeded":
        of = sentence_position(text, 0)[1]
        return f"done: {of} sentence{'s' if of != 1 else ''} spoken"
    if status == "failed":
        return f"failed: {error}" if error else "failed"
    return status
