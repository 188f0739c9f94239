"""The running app answers its health endpoints beside the pages, on the same port."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.smoke


def test_health_is_200_json_with_every_dependency(base_url: str) -> None:
    response = httpx.get(f"{base_url}/health", timeout=10)
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok", "broker": "ok", "worker": "ok", "engine": "ok"}
    assert body["checks"]["engine"]["message"].startswith("engines loaded: ")


def test_liveness_answers_without_checking_dependencies(base_url: str) -> None:
    response = httpx.get(f"{base_url}/health/live", timeout=10)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_openapi_schema_is_served(base_url: str) -> None:
    schema = httpx.get(f"{base_url}/api/openapi.json", timeout=10).json()
    assert schema["info"]["title"] == "LockN API"
    assert {"/health", "/api/keys"} <= set(schema["paths"])
