"""The Studio's progress in words follows the worker's `chars_done` sentence by sentence."""

from __future__ import annotations

from backend.media.engine import split_sentences
from backend.services.jobs.progress import progress_words, sentence_position

TEXT = "One is here. Two follows it! Is this three? And four."


def test_the_sentence_being_spoken_follows_chars_done_as_the_worker_counts_it() -> None:
    sentences = split_sentences(TEXT)
    assert len(sentences) == 4
    assert sentence_position(TEXT, 0) == (1, 4)
    done = 0
    for index, sentence in enumerate(sentences[:-1], start=2):  # job_runner adds len(sentence) after each
        done += len(sentence)
        assert sentence_position(TEXT, done) == (index, 4)
        assert sentence_position(TEXT, done - 1) == (index - 1, 4)
    assert sentence_position(TEXT, len(TEXT) * 2) == (4, 4)  # never past the last


def test_words_for_each_status() -> None:
    assert progress_words("queued", TEXT, 0) == "waiting for a worker"
    assert progress_words("running", TEXT, len("One is here.")) == "speaking sentence 2 of 4"
    assert progress_words("succeeded", TEXT, len(TEXT)) == "done: 4 sentences spoken"
    assert progress_words("succeeded", "Hi.", 3) == "done: 1 sentence spoken"
    assert progress_words("failed", TEXT, 0, "the engine crashed") == "failed: the engine crashed"
