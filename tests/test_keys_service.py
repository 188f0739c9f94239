"""KeyService on SQLite and PostgreSQL: every verification outcome in its fixed order, owner isolation,
rotation, revocation across processes, usage that survives shutdown, and no plaintext at rest."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session

from backend.core.models import ApiKey, KeyUsage, utcnow
from backend.services.keys.service import (
    VERIFICATION_ORDER, InvalidKeyRequest, KeyNotFound, KeyRejected, KeyService, KeySpec, RateLimit,
    build_key_service,
)
from backend.core.key_format import generate_key
from backend.core.settings import get_settings

ALICE, BOB = "auth0|alice", "auth0|bob"


def rejection_code(service: KeyService, key: str | None, scopes: tuple[str, ...] = ()) -> str:
    with pytest.raises(KeyRejected) as rejected:
        service.verify(key, scopes)
    assert rejected.value.status == dict(VERIFICATION_ORDER)[rejected.value.code]
    return rejected.value.code


def expire_now(service: KeyService, key_id: str) -> None:
    """Move a key's expiry into the past directly in the database (create refuses past expiries)."""
    with Session(service.engine) as session:
        row = session.get(ApiKey, key_id)
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    service.cache.invalidate(key_id)


def test_a_valid_key_verifies_and_counts(key_service: KeyService) -> None:
    row, key = key_service.create(ALICE, KeySpec("app", scopes=("tts:read",)))
    verified = key_service.verify(key, ("tts:read",))
    assert (verified.id, verified.owner, verified.env) == (row.id, ALICE, "live")
    assert verified.rate.limit == 60 and verified.rate.remaining == 59


def test_each_failure_has_its_code_and_status(key_service: KeyService) -> None:
    assert rejection_code(key_service, None) == "malformed"
    assert rejection_code(key_service, "lk_live_tooshort") == "malformed"
    assert rejection_code(key_service, generate_key("live")) == "not_found"
    revoked_row, revoked = key_service.create(ALICE, KeySpec("r"))
    key_service.revoke(ALICE, revoked_row.id)
    assert rejection_code(key_service, revoked) == "revoked"
    expired_row, expired = key_service.create(ALICE, KeySpec("e"))
    expire_now(key_service, expired_row.id)
    assert rejection_code(key_service, expired) == "expired"
    quota_row, quota = key_service.create(ALICE, KeySpec("q", quota_chars=100))
    key_service.verify(quota)
    key_service.usage.record(quota_row.id, chars=100)
    assert rejection_code(key_service, quota) == "quota_exceeded"
    _, limited = key_service.create(ALICE, KeySpec("l", rate_limit=RateLimit(2, 60)))
    key_service.verify(limited), key_service.verify(limited)
    assert rejection_code(key_service, limited) == "rate_limited"
    _, reader = key_service.create(ALICE, KeySpec("s", scopes=("tts:read",)))
    assert rejection_code(key_service, reader, ("tts:write",)) == "insufficient_scope"


def test_checks_run_in_the_documented_order(key_service: KeyService) -> None:
    """A key failing several checks reports the earliest one in VERIFICATION_ORDER."""
    row, key = key_service.create(ALICE, KeySpec("multi", scopes=("tts:read",), quota_chars=1,
                                                  rate_limit=RateLimit(1, 60)))
    key_service.verify(key)  # uses the one allowed request
    key_service.usage.record(row.id, chars=5)  # and the quota
    assert rejection_code(key_service, key, ("tts:write",)) == "quota_exceeded"
    expire_now(key_service, row.id)
    assert rejection_code(key_service, key, ("tts:write",)) == "expired"
    key_service.revoke(ALICE, row.id)
    assert rejection_code(key_service, key, ("tts:write",)) == "revoked"
    assert rejection_code(key_service, key[:-1]) == "malformed"


def test_rate_limit_is_checked_before_scope(key_service: KeyService) -> None:
    _, key = key_service.create(ALICE, KeySpec("rl", scopes=("tts:read",), rate_limit=RateLimit(1, 60)))
    key_service.verify(key)
    assert rejection_code(key_service, key, ("tts:write",)) == "rate_limited"


def test_owners_are_isolated(key_service: KeyService) -> None:
    alice_row, _ = key_service.create(ALICE, KeySpec("alice's"))
    bob_row, _ = key_service.create(BOB, KeySpec("bob's"))
    assert [row.id for row in key_service.list(ALICE).keys] == [alice_row.id]
    for attempt in (lambda: key_service.get(BOB, alice_row.id), lambda: key_service.revoke(BOB, alice_row.id),
                    lambda: key_service.rotate(BOB, alice_row.id), lambda: key_service.usage_series(BOB, alice_row.id)):
        with pytest.raises(KeyNotFound):
            attempt()
    assert key_service.get(ALICE, alice_row.id).revoked_at is None, "bob's attempts changed nothing"
    with pytest.raises(InvalidKeyRequest):
        key_service.list(BOB, cursor=alice_row.id)
    assert key_service.get(BOB, bob_row.id).owner == BOB


def test_rotation_without_grace_kills_the_old_key_at_once(key_service: KeyService) -> None:
    old_row, old = key_service.create(ALICE, KeySpec("rot", scopes=("tts:read", "keys:read"),
                                                      rate_limit=RateLimit(10, 30), quota_chars=500))
    key_service.verify(old)  # cached now
    new_row, new = key_service.rotate(ALICE, old_row.id)
    assert new != old and new_row.rotated_from == old_row.id
    assert (new_row.scopes, new_row.rate_limit_requests, new_row.quota_chars) == (["tts:read", "keys:read"], 10, 500)
    assert rejection_code(key_service, old) == "revoked"
    assert key_service.verify(new).id == new_row.id
    with pytest.raises(InvalidKeyRequest):
        key_service.rotate(ALICE, old_row.id)


def test_rotation_with_grace_keeps_the_old_key_until_it_ends(key_service: KeyService) -> None:
    old_row, old = key_service.create(ALICE, KeySpec("grace"))
    _, new = key_service.rotate(ALICE, old_row.id, grace_seconds=1)
    assert key_service.verify(old).id == old_row.id
    assert key_service.verify(new)
    time.sleep(1.1)
    assert rejection_code(key_service, old) == "expired"
    with pytest.raises(InvalidKeyRequest):
        key_service.rotate(ALICE, old_row.id, grace_seconds=86_401)


def test_every_door_reads_one_status_in_grace_included(key_service: KeyService) -> None:
    old_row, _ = key_service.create(ALICE, KeySpec("graceful"))
    new_row, _ = key_service.rotate(ALICE, old_row.id, grace_seconds=3600)
    gone, _ = key_service.create(ALICE, KeySpec("gone"))
    key_service.revoke(ALICE, gone.id)
    lapsed, _ = key_service.create(ALICE, KeySpec("lapsed"))
    expire_now(key_service, lapsed.id)
    expected = {old_row.id: "in_grace", new_row.id: "active", gone.id: "revoked", lapsed.id: "expired"}
    assert key_service.list(ALICE).statuses == expected
    assert key_service.overview(ALICE).statuses == expected
    assert {row_id: key_service.status(key_service.get(ALICE, row_id)) for row_id in expected} == expected


def test_the_dashboard_overview_costs_the_same_queries_for_one_key_or_twenty(key_service: KeyService) -> None:
    from sqlalchemy import event

    def queries_for_overview(owner: str) -> int:
        statements: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
            statements.append(statement)

        event.listen(key_service.engine, "before_cursor_execute", count)
        try:
            overview = key_service.overview(owner, days=30)
        finally:
            event.remove(key_service.engine, "before_cursor_execute", count)
        assert len(overview.keys) == len(overview.series) == len(overview.month)
        return len(statements)

    first, _ = key_service.create(ALICE, KeySpec("one"))
    key_service.rotate(ALICE, key_service.create(ALICE, KeySpec("rotated"))[0].id, grace_seconds=60)
    key_service.usage.record(first.id, requests=2, chars=30)
    key_service.usage.flush()
    one = queries_for_overview(ALICE)
    for n in range(19):
        row, _ = key_service.create(ALICE, KeySpec(f"key {n}"))
        key_service.rotate(ALICE, row.id, grace_seconds=60)
    twenty = queries_for_overview(ALICE)
    assert one == twenty, f"{one} queries for three keys, {twenty} for 41"
    overview = key_service.overview(ALICE, days=30)
    assert overview.month[first.id] == (2, 30) and overview.series[first.id][-1]["chars"] == 30
    assert len(overview.series[first.id]) == 30


def test_the_month_counts_from_its_first_day_even_beyond_the_chart(key_service: KeyService) -> None:
    """On the 31st the month started 30 days ago: its first day is outside a 30-day chart but in the month."""
    row, _ = key_service.create(ALICE, KeySpec("month"))
    today = utcnow().date()
    with Session(key_service.engine) as session:
        session.add(KeyUsage(key_id=row.id, day=today.replace(day=1), requests=1, chars=7))
        session.commit()
    assert key_service.overview(ALICE, days=1).month[row.id] == (1, 7)


def test_invalid_requests_say_what_to_fix(key_service: KeyService) -> None:
    cases = {"name": KeySpec("  "), "scopes": KeySpec("x", scopes=("tts:fly",)),
             "expires_at": KeySpec("x", expires_at=utcnow() - timedelta(days=1)),
             "quota_chars": KeySpec("x", quota_chars=0), "rate_limit": KeySpec("x", rate_limit=RateLimit(0, 60))}
    for field, spec in cases.items():
        with pytest.raises(InvalidKeyRequest) as invalid:
            key_service.create(ALICE, spec)
        assert invalid.value.field == field
    assert RateLimit.parse("120/30s") == RateLimit(120, 30) and RateLimit.parse("5/hour") == RateLimit(5, 3600)
    with pytest.raises(InvalidKeyRequest):
        RateLimit.parse("lots")


def test_database_holds_no_plaintext_key(key_service: KeyService) -> None:
    row, key = key_service.create(ALICE, KeySpec("secret"))
    key_service.verify(key)
    key_service.usage.flush()
    with key_service.engine.connect() as connection:
        dump = " ".join(str(value) for table in ("api_keys", "key_usage")
                        for record in connection.execute(text(f"SELECT * FROM {table}")) for value in record)
    assert row.id in dump
    assert key not in dump and key[12:] not in dump, "only the digest and the display start may be stored"


def test_usage_is_buffered_then_flushed_on_close(database: str) -> None:
    service = build_key_service(get_settings())
    row, key = service.create(ALICE, KeySpec("usage"))
    for _ in range(7):
        service.verify(key)
    service.usage.record(row.id, chars=1234, audio_seconds=5.5)
    service.usage.record(row.id, errors=1)
    with Session(service.engine) as session:
        assert session.get(KeyUsage, (row.id, utcnow().date())) is None, "no write on the request path"
    service.close()
    with Session(service.engine) as session:
        usage = session.get(KeyUsage, (row.id, utcnow().date()))
        stored = session.get(ApiKey, row.id)
    assert (usage.requests, usage.chars, usage.audio_seconds, usage.errors) == (7, 1234, 5.5, 1)
    assert stored.last_used_at is not None
    series = build_key_service(get_settings()).usage_series(ALICE, row.id, days=3)
    assert [day["requests"] for day in series] == [0, 0, 7]


def test_listing_paginates_newest_first(key_service: KeyService) -> None:
    ids = [key_service.create(ALICE, KeySpec(f"k{i}"))[0].id for i in range(5)]
    first = key_service.list(ALICE, limit=2)
    second = key_service.list(ALICE, limit=2, cursor=first.next_cursor)
    third = key_service.list(ALICE, limit=2, cursor=second.next_cursor)
    listed = [row.id for page in (first, second, third) for row in page.keys]
    assert listed == ids[::-1] and third.next_cursor is None


def test_revocation_reaches_another_process_within_a_second(key_service: KeyService, embedded_broker) -> None:
    """Two services stand for two web processes: they share the database and the Redis bus, not memory."""
    other = build_key_service(get_settings())
    this = build_key_service(get_settings())
    assert other.bus.subscribed.wait(5)
    row, key = this.create(ALICE, KeySpec("shared"))
    assert other.verify(key).id == row.id  # now cached in the other process
    this.revoke(ALICE, row.id)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            other.verify(key)
        except KeyRejected as exc:
            assert exc.code == "revoked"
            break
        time.sleep(0.01)
    else:
        pytest.fail("the other process still accepted a revoked key after 1 s")
    other.close(), this.close()


def test_a_flood_of_forged_keys_cannot_grow_the_cache_or_push_out_real_keys(key_service: KeyService) -> None:
    from backend.services.keys.cache import KeyCache

    key_service.cache = KeyCache(max_misses=100)
    row, real = key_service.create(ALICE, KeySpec("real"))
    key_service.verify(real, count=False)
    for _ in range(500):  # valid format and checksum, unauthenticated, each unknown
        assert rejection_code(key_service, generate_key("live")) == "not_found"
    assert len(key_service.cache) <= 101
    from sqlalchemy import event

    queries: list[str] = []
    listener = lambda *args: queries.append(args[2])  # noqa: E731 - (conn, cursor, statement, …)
    event.listen(key_service.engine, "before_cursor_execute", listener)
    try:
        assert key_service.verify(real, count=False).id == row.id
    finally:
        event.remove(key_service.engine, "before_cursor_execute", listener)
    assert queries == [], "the real key is still cached: verifying it touched no database"
