"""Auth probing: a flood of malformed keys is refused without a single database query.

The key format carries a checksum (backend/core/key_format.py), so a guessed,
truncated or mangled key is refused by arithmetic before any lookup: probing
costs the attacker a request and LockN no database work.
"""

from __future__ import annotations

import random
import string

from fastapi.testclient import TestClient
from sqlalchemy import event

from backend.api import build_api
from backend.core.db import get_engine
from backend.core.key_format import BASE62, BODY_LENGTH, generate_key

PROBES = 1000


def malformed_keys(count: int, seed: int = 7) -> list[str]:
    """Keys of every broken shape: wrong prefix, length, alphabet, checksum; empty, huge, non-ASCII."""
    rng = random.Random(seed)
    shapes = [
        lambda: "",
        lambda: "lk_live_",
        lambda: "lk_prod_" + "".join(rng.choices(BASE62, k=BODY_LENGTH)),
        lambda: "sk-" + "".join(rng.choices(BASE62, k=48)),
        lambda: "lk_live_" + "".join(rng.choices(BASE62, k=rng.randint(1, 60))),
        lambda: "lk_test_" + "".join(rng.choices(string.punctuation, k=BODY_LENGTH)),
        lambda: "lk_live_" + "".join(rng.choices(BASE62, k=BODY_LENGTH)),  # right shape, checksum wrong
        lambda: generate_key("live")[:-1] + rng.choice("!#$%"),
        lambda: "lk_live_" + "é" * BODY_LENGTH,
        lambda: "lk_live_" + "A" * 10_000,
    ]
    return [rng.choice(shapes)() for _ in range(count)]


def test_a_thousand_malformed_keys_cost_no_database_query(database) -> None:
    client = TestClient(build_api())
    queries: list[str] = []
    engine = get_engine()

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        queries.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        for n, key in enumerate(malformed_keys(PROBES)):
            path = "/v1/models" if n % 2 else "/api/voice/jobs"
            # httpx refuses non-ASCII header values, as any HTTP client must: send those as raw bytes.
            response = client.get(path, headers={"Authorization": f"Bearer {key}".encode()})
            assert response.status_code == 401, (key[:40], response.text)
            error = response.json()["error"]
            assert error["code"] in ("malformed", "invalid_api_key") and "Traceback" not in response.text
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert queries == [], f"{len(queries)} queries for malformed keys, e.g. {queries[:1]}"

    # The counter works: a well-formed key (valid checksum) that does not exist is looked up, once.
    event.listen(engine, "before_cursor_execute", count)
    try:
        response = client.get("/v1/models", headers={"Authorization": f"Bearer {generate_key('live')}"})
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 401 and len(queries) >= 1
