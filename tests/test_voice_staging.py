"""Clips staged by the Studio before they become voices: checked at once, kept per owner, made into a voice once."""

from __future__ import annotations

import pytest

from backend.core.settings import get_settings
from backend.services import voices
from tests.test_voice_api import clip

ALICE, BOB = "auth0|alice", "auth0|bob"


def staged_files() -> list[str]:
    return sorted(p.name for p in (get_settings().data_dir / "staging").rglob("*") if p.is_file())


def test_a_staged_clip_becomes_a_voice_of_its_owner_only(database) -> None:
    staged = voices.stage_clip(ALICE, clip(12))
    assert 11.5 < staged.seconds < 12.5 and staged.speech.size > 0
    with pytest.raises(voices.VoiceRejected, match="Drop a 10–30 second recording first"):
        voices.create_from_staged(BOB, staged.token, "Stolen", "Not mine.")
    entry = voices.create_from_staged(ALICE, staged.token, "Mine", "These words are mine.")
    assert entry.id.startswith(voices.CLONED_PREFIX) and voices.get_cloned_voice(ALICE, entry.id).name == "Mine"
    assert staged_files() == [], "the staged file goes once it is a voice"
    with pytest.raises(voices.VoiceRejected):
        voices.create_from_staged(ALICE, staged.token, "Again", "Twice.")


def test_a_bad_clip_is_never_staged_and_a_bad_token_finds_nothing(database) -> None:
    with pytest.raises(voices.VoiceRejected, match="after trimming silence"):
        voices.stage_clip(ALICE, clip(3))
    assert staged_files() == []
    for token in ("", "../../etc/passwd", "0" * 23, "z" * 24):
        with pytest.raises(voices.VoiceRejected, match="Drop a 10–30 second recording first"):
            voices.create_from_staged(ALICE, token, "Name", "Words.")


def test_a_discarded_clip_is_gone_and_a_rejected_name_keeps_the_clip(database) -> None:
    first = voices.stage_clip(ALICE, clip(12))
    voices.discard_staged(ALICE, first.token)
    assert staged_files() == []
    second = voices.stage_clip(ALICE, clip(12))
    with pytest.raises(voices.VoiceRejected, match="name must be"):
        voices.create_from_staged(ALICE, second.token, " ", "Words.")
    assert len(staged_files()) == 1, "the user fixes the name and tries again without dropping the clip anew"
