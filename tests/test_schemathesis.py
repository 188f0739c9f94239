"""Schemathesis against the API's own OpenAPI schema: every /api and /v1 operation, with a valid key.

Generated requests (valid and invalid) go through the real app and a real
database; every response must be documented by the schema and none may be a 500.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.api import build_api
from backend.services.keys.service import SCOPES, KeySpec, RateLimit

MAX_EXAMPLES = 40


@schemathesis.check
def no_internal_error(ctx, response, case) -> None:  # type: ignore[no-untyped-def]
    if response.status_code == 500:
        raise AssertionError(f"500 Internal Server Error: {response.text[:300]}")
#: What "clean" means here: no 500, and every status, content type and body is the documented one.
#: (Positive-data acceptance is left out: a schema-valid key expiry in the past is still refused, by rule.
#: A 503 is allowed, documented: the broker runs but no worker does, so synthesis answers "no worker".)
#: 503 is a documented answer (no worker runs in this test, so synthesis says so); 500 never is.
CHECKS = [no_internal_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def fuzz(operation, headers: dict[str, str]) -> str | None:  # type: ignore[no-untyped-def]
    """Run generated cases against one operation; the first failure, described, or None."""

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None, phases=[Phase.explicit, Phase.generate])
    def run(case) -> None:  # type: ignore[no-untyped-def]
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected per operation, reported together
        return f"{operation.method.upper()} {operation.path}: {str(exc).strip()[:1500]}"
    return None


def test_every_operation_is_documented_and_never_fails(embedded_broker, database, key_service) -> None:
    _, key = key_service.create("auth0|schemathesis", KeySpec("fuzz", scopes=tuple(SCOPES),
                                                               rate_limit=RateLimit(1_000_000, 60)))
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", build_api()).include(path_regex=r"^/(api|v1)/")
    headers = {"Authorization": f"Bearer {key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18, f"only {len(operations)} operations found in the schema"
    failures = [failure for operation in operations if (failure := fuzz(operation, headers)) is not None]
    assert not failures, "\n\n".join(failures)
