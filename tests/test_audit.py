"""The audit trail (issue 19): each listed event is recorded with who, what, when and from where, in the
transaction of the change; an owner reads only their own, through GET /api/audit with keys:read."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from fastapi.testclient import TestClient

from backend.api import build_api
from backend.core.request_context import RequestFacts, facts_scope
from backend.services.accounts import sessions
from backend.services.voices import service as voices
from backend.services.accounts.audit import actor_scope, owner_activity
from backend.services.keys.service import KeySpec

ALICE, BOB = "auth0|alice", "auth0|bob"


def actions(owner: str) -> list[tuple[str, str]]:
    return [(event.action, event.actor) for event in reversed(owner_activity(owner, 100).items)]


def test_key_events_name_who_did_them(key_service) -> None:
    admin_row, admin = key_service.create(ALICE, KeySpec("admin", scopes=("keys:read", "keys:write", "tts:read")))
    with actor_scope("operator"):
        key_service.create(ALICE, KeySpec("from the cli"))
    client = TestClient(build_api())
    made = client.post("/api/keys", headers={"Authorization": f"Bearer {admin}"}, json={"name": "by a key", "scopes": ["tts:read"]})
    assert made.status_code == 201, made.text
    rotated = client.post(f"/api/keys/{made.json()['id']}/rotate", headers={"Authorization": f"Bearer {admin}"},
                          json={"grace_seconds": 0})
    assert rotated.status_code in (200, 201), rotated.text
    key_service.revoke(ALICE, admin_row.id)
    key_service.revoke(ALICE, admin_row.id)  # idempotent: one event
    assert actions(ALICE) == [("key.created", "user"), ("key.created", "operator"),
                              ("key.created", f"key:{admin_row.id}"), ("key.rotated", f"key:{admin_row.id}"),
                              ("key.revoked", "user")]
    by_key = owner_activity(ALICE, 100).items[1]  # the rotation, newest but one
    assert by_key.request_id == rotated.headers["x-request-id"] and by_key.client is None  # testclient: no IP
    assert actions(BOB) == []


def test_sign_in_out_and_voices_are_recorded(database, isolated_settings) -> None:
    row = sessions.start_session({"sub": ALICE, "email": "alice@example.test"}, None)
    sessions.end_session(row.id)
    sessions.end_session(row.id)  # already ended: nothing more happened
    pcm = np.sin(np.linspace(0, 4000, 22050 * 12)).astype(np.float32) * 0.3
    clip = io.BytesIO()
    sf.write(clip, pcm, 22050, format="WAV")
    with facts_scope(RequestFacts(address="203.0.113.77")):
        voice = voices.create_cloned_voice(ALICE, "Mine", "hello there", clip.getvalue())
    voices.delete_cloned_voice(ALICE, voice.id)
    assert [a for a, _ in actions(ALICE)] == ["session.signed_in", "session.signed_out", "voice.cloned",
                                              "voice.deleted"]
    cloned = owner_activity(ALICE, 100).items[1]
    assert (cloned.target, cloned.detail, cloned.client) == (voice.id, "Mine", "203.0.113.0/24")


def test_the_trail_is_read_with_keys_read_and_only_ones_own(key_service) -> None:
    reader = key_service.create(ALICE, KeySpec("reader", scopes=("keys:read",)))[1]
    speaker = key_service.create(ALICE, KeySpec("speaker", scopes=("tts:read",)))[1]
    key_service.create(BOB, KeySpec("bob's"))
    client = TestClient(build_api())
    trail = client.get("/api/audit", headers={"Authorization": f"Bearer {reader}"})
    assert trail.status_code == 200
    assert [e["action"] for e in trail.json()["data"]] == ["key.created", "key.created"]  # Alice's two, not Bob's
    assert client.get("/api/audit", headers={"Authorization": f"Bearer {speaker}"}).status_code == 403
