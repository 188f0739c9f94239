"""Limits belong to a key's lineage (issue 27, item 3): rotating a key, or minting children with `keys:write`,
no longer multiplies its monthly quota, its rate limit or its jobs at once. A successor goes on with its
predecessor's counters; a child spends its parent's budget as well as its own. Each limit is raced from
many threads, since "exactly N fit" is the whole point."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.services.keys.service import KeyForbidden, KeyRejected, KeySpec, RateLimit, VerifiedKey

ALICE = "auth0|lineage"
ADMIN = ("tts:read", "tts:write", "keys:read", "keys:write")


def verified(key_service, key: str) -> VerifiedKey:  # type: ignore[no-untyped-def]
    return key_service.verify(key, count=False)


def reserved(key_service, key: VerifiedKey, chars: int) -> bool:  # type: ignore[no-untyped-def]
    try:
        key_service.reserve_chars(key, chars)
        return True
    except KeyRejected as exc:
        assert exc.code == "quota_exceeded"
        return False


def family(key_service, spec: KeySpec, children: int) -> tuple[VerifiedKey, list[VerifiedKey]]:  # type: ignore[no-untyped-def]
    """A parent key made by its owner and `children` keys it made itself (each asking for its full limits)."""
    parent = verified(key_service, key_service.create(ALICE, spec)[1])
    made = [key_service.create(ALICE, KeySpec(f"child {n}", scopes=ADMIN, rate_limit=spec.rate_limit,
                                              max_concurrent_jobs=spec.max_concurrent_jobs), minted_by=parent)[1]
            for n in range(children)]
    return parent, [verified(key_service, key) for key in made]


def test_a_successor_goes_on_with_its_predecessors_month(embedded_broker, key_service) -> None:
    row, key = key_service.create(ALICE, KeySpec("fifty", scopes=ADMIN, quota_chars=50))
    assert reserved(key_service, verified(key_service, key), 40)
    successor = verified(key_service, key_service.rotate(ALICE, row.id, grace_seconds=0)[1])
    assert not reserved(key_service, successor, 20), "a rotation started the month again at 0"
    assert reserved(key_service, successor, 10)
    with pytest.raises(KeyRejected) as refused:
        key_service.verify(key_service.rotate(ALICE, successor.id, grace_seconds=0)[1])
    assert refused.value.code == "quota_exceeded"


def test_a_50_character_key_with_keys_write_cannot_mint_more_characters(embedded_broker, key_service) -> None:
    """The parent and five children (each inheriting the full 50) race 30 reservations of 10 characters:
    exactly five fit, whichever keys sent them; a rotated child goes on with the same counters."""
    parent, children = family(key_service, KeySpec("fifty", scopes=ADMIN, quota_chars=50), 5)
    assert {child.quota_chars for child in children} == {50}
    keys = [parent, *children] * 5
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda key: reserved(key_service, key, 10), keys))
    assert outcomes.count(True) == 5, outcomes
    rotated_key = key_service.rotate(ALICE, children[0].id, grace_seconds=60, by=parent)[1]
    with pytest.raises(KeyRejected, match="monthly character quota"):
        key_service.verify(rotated_key)
    key_service.refund_chars(children[1], 10)  # a job that was never queued gives back to every budget
    rotated = verified(key_service, rotated_key)
    assert reserved(key_service, rotated, 10) and not reserved(key_service, parent, 1)


def test_a_child_with_a_smaller_quota_has_its_own_and_its_parents(embedded_broker, key_service) -> None:
    parent, _ = family(key_service, KeySpec("hundred", scopes=ADMIN, quota_chars=100), 0)
    small, other = (verified(key_service, key_service.create(ALICE, KeySpec(name, quota_chars=quota),
                                                             minted_by=parent)[1]) for name, quota in (("20", 20), ("30", 30)))
    assert reserved(key_service, small, 20) and not reserved(key_service, small, 1)
    assert reserved(key_service, parent, 80) and not reserved(key_service, parent, 1)
    with pytest.raises(KeyRejected, match="the key that created this key's monthly quota of 100"):
        key_service.reserve_chars(other, 1)  # its own 30 are untouched; its parent's 100 are spent
    with pytest.raises(KeyRejected, match="monthly character quota"):
        key_service.verify(key_service.create(ALICE, KeySpec("late"), minted_by=parent)[1])


def test_rate_limits_are_shared_by_a_lineage_and_drawn_from_the_parent(key_service) -> None:
    """Three requests a minute for the parent and its four children together (the in-process limiter)."""
    parent_row, parent_key = key_service.create(ALICE, KeySpec("three", scopes=ADMIN, rate_limit=RateLimit(3, 60)))
    parent = verified(key_service, parent_key)
    children = [key_service.create(ALICE, KeySpec(f"c{n}", scopes=ADMIN, rate_limit=RateLimit(3, 60)),
                                   minted_by=parent)[1] for n in range(4)]

    def allowed(key: str) -> bool:
        try:
            key_service.verify(key)
            return True
        except KeyRejected as exc:
            assert exc.code == "rate_limited" and int(exc.headers["Retry-After"]) >= 1
            return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(allowed, [parent_key, *children] * 3))
    assert outcomes.count(True) == 3, outcomes
    successor = key_service.rotate(ALICE, parent_row.id, grace_seconds=0)[1]
    assert not allowed(successor), "a rotation opened a fresh window"


def test_the_redis_limiter_counts_a_request_in_every_window_or_in_none(redis_url) -> None:
    import redis

    from backend.services.keys.rate_limit import RedisRateLimiter

    limiter = RedisRateLimiter(redis.Redis.from_url(redis_url, decode_responses=True))
    buckets = [[(f"child{n}", 10, 60), ("parent", 5, 60)] for n in range(4)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        decisions = list(pool.map(limiter.hit_all, buckets * 5))
    assert sum(d.allowed for d in decisions) == 5
    refused = next(d for d in decisions if not d.allowed)
    assert (refused.limit, refused.remaining) == (5, 0) and refused.retry_after > 0
    assert limiter.hit("child0", 10, 60).remaining < 10, "an allowed request was counted in its own window"
    assert limiter.hit_all([("fresh", 10, 60), ("parent", 5, 60)]).allowed is False
    assert limiter.hit("fresh", 10, 60).remaining == 9, "a refused request was counted in no window"


def test_jobs_at_once_are_shared_by_a_lineage_and_drawn_from_the_parent(embedded_broker, key_service) -> None:
    from backend.services.jobs.admission import TooManyConcurrent, acquire, holders_of, release

    parent, children = family(key_service, KeySpec("two at once", scopes=ADMIN, max_concurrent_jobs=2), 4)

    def admitted(job: tuple[int, VerifiedKey]) -> bool:
        number, key = job
        try:
            acquire(holders_of(key, ALICE), f"job_{number}")
            return True
        except TooManyConcurrent as exc:
            assert exc.cap == 2
            return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(admitted, enumerate([parent, *children] * 3)))
    assert outcomes.count(True) == 2, outcomes
    running = [f"job_{n}" for n, ok in enumerate(outcomes) if ok]
    # A child none of whose own jobs was admitted (which two won the race varies): its own cap has room, so what
    # refuses it is the parent's. (A child holding both would be refused by its own cap, and told so.)
    owners = {n % (1 + len(children)) for n, ok in enumerate(outcomes) if ok}
    idle_child = next(child for index, child in enumerate(children, start=1) if index not in owners)
    with pytest.raises(TooManyConcurrent, match="of the key that created this key"):
        acquire(holders_of(idle_child, ALICE), "job_more")
    release(running[0])
    release(running[0])  # twice: idempotent, frees one slot only
    assert admitted((100, children[3])) and not admitted((101, parent))
    successor = verified(key_service, key_service.rotate(ALICE, children[3].id, grace_seconds=60, by=parent)[1])
    release(running[1])
    assert admitted((102, successor))
    assert not admitted((103, children[3])), "a successor and its predecessor share one cap"


def test_keys_made_by_keys_go_only_so_deep(key_service) -> None:
    from backend.services.keys.lineage import MAX_KEY_DEPTH

    key = verified(key_service, key_service.create(ALICE, KeySpec("top", scopes=ADMIN))[1])
    for level in range(MAX_KEY_DEPTH - 1):
        key = verified(key_service, key_service.create(ALICE, KeySpec(f"level {level}", scopes=ADMIN),
                                                       minted_by=key)[1])
    with pytest.raises(KeyForbidden) as refused:
        key_service.create(ALICE, KeySpec("too deep", scopes=ADMIN), minted_by=key)
    assert refused.value.code == "exceeds_own_limits"
    assert len(key.budgets) == MAX_KEY_DEPTH
