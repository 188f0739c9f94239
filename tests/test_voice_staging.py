"""Clips staged by the Studio before they become voices: checked at once, kept per owner, made into a voice once."""

from __future__ import annotations

import pytest

from backend.core.settings import get_settings
from backend.services.voices import service as voices
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


def cloned_count(owner: str) -> int:
    from sqlmodel import Session, func, select

    from backend.core.db import get_engine
    from backend.core.models import ClonedVoice

    with Session(get_engine()) as session:
        return session.exec(select(func.count()).select_from(ClonedVoice).where(ClonedVoice.owner == owner)).one()


def test_cloned_voices_stop_at_the_owners_cap_with_a_clear_409(key_service, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from backend.api import build_api
    from backend.services.keys.service import KeySpec, RateLimit
    from tests.conftest import reset_caches

    monkeypatch.setenv("LOCKN_MAX_CLONED_VOICES", "2")
    reset_caches()
    first = voices.create_cloned_voice(ALICE, "One", "Words.", clip(12))
    voices.create_cloned_voice(ALICE, "Two", "Words.", clip(12))
    with pytest.raises(voices.TooManyVoices, match=r"2 cloned voices, the most one account may keep \(2\)"):
        voices.create_cloned_voice(ALICE, "Three", "Words.", clip(12))
    voices.create_cloned_voice(BOB, "Bob's", "Words.", clip(12))  # the cap is per owner
    key = key_service.create(ALICE, KeySpec("alice", scopes=["tts:read", "tts:write"],
                                            rate_limit=RateLimit(100, 60)))[1]
    answer = TestClient(build_api()).post("/api/voice/voices", headers={"Authorization": f"Bearer {key}"},
                                          data={"name": "Three", "transcript": "Words."},
                                          files={"audio": ("me.wav", clip(12), "audio/wav")})
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "voice_limit_reached" and "delete one" in answer.json()["error"]["message"]
    assert cloned_count(ALICE) == 2
    assert len(list((get_settings().data_dir / "voices" / "cloned").glob("*"))) == 3, "no file of a refused clone"
    voices.delete_cloned_voice(ALICE, first.id)
    voices.create_cloned_voice(ALICE, "Three", "Words.", clip(12))  # room again


def test_clones_racing_for_the_last_place_get_one_voice(database, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import reset_caches

    monkeypatch.setenv("LOCKN_MAX_CLONED_VOICES", "3")
    reset_caches()
    for n in range(2):
        voices.create_cloned_voice(ALICE, f"Voice {n}", "Words.", clip(12))
    data = clip(12)

    def attempt(n: int) -> str:
        try:
            voices.create_cloned_voice(ALICE, f"Racer {n}", "Words.", data)
            return "made"
        except voices.TooManyVoices:
            return "refused"

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    assert sorted(outcomes) == ["made"] + ["refused"] * 5, outcomes
    assert cloned_count(ALICE) == 3


def test_the_sweep_deletes_old_staged_clips_and_unfinished_uploads_only(database, embedded_broker) -> None:
    import os
    import time

    from workers.reaper import StalledJobSweeper

    old = voices.stage_clip(ALICE, clip(12))
    fresh = voices.stage_clip(BOB, clip(12))
    staging = get_settings().data_dir / "staging"
    cloned = get_settings().data_dir / "voices" / "cloned"
    cloned.mkdir(parents=True, exist_ok=True)
    leftovers = [next(staging.glob("*/")) / "abcdef.clip.part", cloned / "voice_0123456789abcdef.wav.part"]
    for path in leftovers:
        path.write_bytes(b"half an upload")
    ages_ago = time.time() - get_settings().staged_clip_max_age_s - 60
    for path in [*staging.glob("*/*.clip"), *leftovers]:
        if old.token in path.name or path in leftovers:
            os.utime(path, (ages_ago, ages_ago))
    kept = voices.create_cloned_voice(ALICE, "Kept", "Words.", clip(12))
    os.utime(voices.reference_path(kept.id), (ages_ago, ages_ago))  # a voice's clip is never swept

    sweeper = StalledJobSweeper(interval_s=0.1)  # the workers' own sweep
    sweeper.start()
    try:
        deadline = time.monotonic() + 10
        while len(staged_files()) > 1 or any(path.exists() for path in leftovers):
            assert time.monotonic() < deadline, staged_files()
            time.sleep(0.1)
    finally:
        sweeper.stop()
        sweeper.join()
    assert staged_files() == [f"{fresh.token}.clip"]
    assert voices.reference_path(kept.id).exists()
    with pytest.raises(voices.VoiceRejected, match="Drop a 10–30 second recording first"):
        voices.create_from_staged(ALICE, old.token, "Too late", "Words.")
    voices.create_from_staged(BOB, fresh.token, "In time", "Words.")


def test_an_owner_keeps_only_the_newest_staged_clips(database) -> None:
    tokens = [voices.stage_clip(ALICE, clip(12)).token for _ in range(voices.MAX_STAGED_PER_OWNER + 2)]
    assert staged_files() == sorted(f"{token}.clip" for token in tokens[-voices.MAX_STAGED_PER_OWNER:])
