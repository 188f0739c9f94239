"""`/health` and `/health/live` against real dependencies: SQLite, the embedded broker, Redis, PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from backend.core import db
from backend.api import build_api
from backend.core.redis_client import get_redis
from backend.core.settings import get_settings
from backend.queue import heartbeat

ALL_CHECKS = {"database", "broker", "worker", "engine"}


@pytest.fixture
def client() -> TestClient:
    return TestClient(build_api())


PIPER = {"name": "piper", "supports_cloning": False, "voices": []}


def publish_worker(engines: list[dict] | None = None) -> None:
    heartbeat.publish(get_redis(), heartbeat.WorkerInfo(hostname="cpu@test", queues=["cpu"],
                                                        engines=[PIPER] if engines is None else engines))


def test_liveness_needs_no_dependency(client: TestClient) -> None:
    response = client.get("/health/live")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_broker_down_makes_health_503_with_a_reason(client: TestClient) -> None:
    db.migrate()
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert set(body["checks"]) == ALL_CHECKS
    assert body["checks"]["database"]["status"] == "ok"
    broker = body["checks"]["broker"]
    assert broker["status"] == "down" and broker["message"] and "Traceback" not in broker["message"]
    assert all(isinstance(check["latency_ms"], float) for check in body["checks"].values())
    assert response.headers["cache-control"] == "no-store"


def test_embedded_broker_and_worker_make_health_200(client: TestClient, embedded_broker) -> None:
    db.migrate()
    response = client.get("/health")
    assert response.json()["checks"]["worker"]["status"] == "down", "no worker has reported yet"
    assert response.status_code == 503
    publish_worker()
    response = client.get("/health")
    assert response.status_code == 200, response.json()
    checks = response.json()["checks"]
    assert checks["broker"]["message"] == "Redis (embedded)"
    assert checks["worker"]["message"].startswith("1 worker(s): cpu@test")
    assert checks["engine"]["message"] == "engines loaded: piper"


def test_a_worker_without_the_configured_engine_is_not_healthy(client: TestClient, embedded_broker) -> None:
    db.migrate()
    publish_worker(engines=[])
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["engine"]["message"] == "no live worker has the piper engine loaded"


def test_a_gpu_engine_warming_up_is_said_until_it_is_ready(client: TestClient, embedded_broker, monkeypatch) -> None:
    """A GPU worker announces its engines `warming` until its first decoding step has run: /health and the
    status cards say "warming up"; once one worker has it ready, it is ok."""
    from backend.services.status.health import service_cards
    from tests.conftest import reset_caches

    monkeypatch.setenv("LOCKN_ENGINES", "qwen3")
    reset_caches()
    db.migrate()
    qwen = {"name": "qwen3", "device": "cuda", "supports_cloning": True, "voices": [{"id": "qwen3-aiden"}]}
    warming = heartbeat.WorkerInfo(hostname="gpu@a", queues=["gpu"], engines=[{**qwen, "warming": True}])
    heartbeat.publish(get_redis(), warming)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["engine"]["message"].startswith("warming up: qwen3")
    card = next(card for card in service_cards() if card["name"] == "Engine qwen3")
    assert card["status"] == "warming up" and "first step" in card["detail"]
    heartbeat.publish(get_redis(), heartbeat.WorkerInfo(hostname="gpu@b", queues=["gpu"],
                                                        engines=[{**qwen, "warming": False}]))
    assert client.get("/health").status_code == 200
    card = next(card for card in service_cards() if card["name"] == "Engine qwen3")
    assert card["status"] == "ok" and card["detail"] == "cuda · 1 voice(s)"


def test_a_gpu_engine_says_how_many_streams_it_decodes_together(client: TestClient, embedded_broker,
                                                                monkeypatch) -> None:
    """A GPU engine's card and /health say how many sentences it speaks at once, and when the card could hold
    fewer cache rows than LOCKN_GPU_MAX_STREAMS asked for, that it holds no more (jobs past them wait)."""
    from backend.services.status.health import service_cards
    from tests.conftest import reset_caches

    monkeypatch.setenv("LOCKN_ENGINES", "fish,qwen3")
    reset_caches()
    db.migrate()
    fish = {"name": "fish", "device": "cuda", "voices": [{"id": "fish-default"}], "streams": 4, "streams_asked": 8}
    qwen = {"name": "qwen3", "device": "cuda", "voices": [], "streams": 8, "streams_asked": 8}
    heartbeat.publish(get_redis(), heartbeat.WorkerInfo(hostname="gpu@a", queues=["gpu"], engines=[fish, qwen]))
    message = client.get("/health").json()["checks"]["engine"]["message"]
    assert message == ("engines loaded: fish (4 streams at once, not the 8 of LOCKN_GPU_MAX_STREAMS: the GPU holds "
                       "no more), qwen3 (8 streams at once)")
    cards = {card["name"]: card for card in service_cards()}
    assert cards["Engine fish"]["detail"] == \
        "cuda · 1 voice(s) · 4 streams at once, not the 8 of LOCKN_GPU_MAX_STREAMS: the GPU holds no more"
    assert cards["Engine qwen3"]["detail"] == "cuda · 0 voice(s) · 8 streams at once"


def test_voices_an_engine_could_not_load_are_named_a_few_at_a_time(client: TestClient, embedded_broker) -> None:
    """Five damaged voices dropped in, four of them alike: the card names three of a kind and counts the rest,
    each kind with its reason; the engine stays up (its other voices speak)."""
    from backend.services.status.health import service_cards

    db.migrate()
    failures = {f"en_US-broken{n}-low": ".onnx model unreadable (InvalidProtobuf)" for n in range(4)}
    failures["en_US-typo-low"] = ".onnx.json config unreadable (JSONDecodeError)"
    piper = {"name": "piper", "device": "cpu", "voices": [{"id": "en_US-joe-medium"}], "voice_failures": failures}
    heartbeat.publish(get_redis(), heartbeat.WorkerInfo(hostname="cpu@a", queues=["cpu"], engines=[piper]))
    assert client.get("/health").status_code == 200
    card = next(card for card in service_cards() if card["name"] == "Engine piper")
    assert card["status"] == "ok"
    assert card["detail"] == ("cpu · 1 voice(s) · 4 voices not loaded, .onnx model unreadable (InvalidProtobuf): "
                              "en_US-broken0-low, en_US-broken1-low, en_US-broken2-low and 1 more; 1 voice not "
                              "loaded, .onnx.json config unreadable (JSONDecodeError): en_US-typo-low")


def test_an_engine_without_weights_says_which_command_fixes_it(client: TestClient, embedded_broker,
                                                               monkeypatch) -> None:
    """A GPU worker told to run qwen3 without weights says why in its heartbeat: /health and the dashboard's
    card carry that sentence (the command to run), not a bare "not loaded"."""
    from backend.services.status.health import service_cards

    db.migrate()
    monkeypatch.setenv("LOCKN_ENGINES", "piper,qwen3")
    get_settings.cache_clear()
    reason = "no weights: run `python -m backend.ops.cli models pull qwen3-custom` (or set LOCKN_QWEN_CHECKPOINT_DIR)"
    publish_worker(engines=[{**PIPER, "device": "cpu"}])
    heartbeat.publish(get_redis(), heartbeat.WorkerInfo(hostname="gpu@test", queues=["gpu"],
                                                        unavailable={"qwen3": reason}))
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["engine"]["message"] == f"qwen3: {reason}"
    card = next(card for card in service_cards() if card["name"] == "Engine qwen3")
    assert (card["status"], card["detail"]) == ("down", reason)


def test_a_heartbeat_from_a_newer_worker_is_still_read(embedded_broker) -> None:
    """A GPU host upgraded before the web tier announces fields this version does not know: it still counts."""
    import json

    get_redis().set(heartbeat.KEY_PREFIX + "gpu@new", json.dumps(
        {"hostname": "gpu@new", "queues": ["gpu"], "engines": [], "unavailable": {}, "added_later": 1}), ex=9)
    assert [w.hostname for w in heartbeat.live_workers(get_redis())] == ["gpu@new"]


def test_every_configured_queue_needs_a_worker(client: TestClient, embedded_broker, monkeypatch) -> None:
    from tests.conftest import reset_caches

    monkeypatch.setenv("LOCKN_ENGINES", "piper,fish")
    reset_caches()
    db.migrate()
    publish_worker()
    worker = client.get("/health").json()["checks"]["worker"]
    assert worker["status"] == "down" and "queue gpu" in worker["message"]


@pytest.mark.redis
def test_configured_redis_is_the_broker(client: TestClient, redis_url: str, monkeypatch) -> None:
    monkeypatch.setenv("LOCKN_REDIS_URL", redis_url)
    from tests.conftest import reset_caches

    reset_caches()
    db.migrate()
    publish_worker()
    response = client.get("/health")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["broker"]["message"] == "Redis"


def test_unreachable_database_is_reported_without_secrets(client: TestClient, monkeypatch, closed_port: int) -> None:
    monkeypatch.setenv("LOCKN_DATABASE_URL", f"postgresql://lockn:hunter2secret@127.0.0.1:{closed_port}/lockn")
    from tests.conftest import reset_caches

    reset_caches()
    response = client.get("/health")
    assert response.status_code == 503
    database = response.json()["checks"]["database"]
    assert database["status"] == "down"
    assert "hunter2secret" not in response.text


def test_unknown_api_route_uses_the_error_envelope(client: TestClient) -> None:
    response = client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found",
                                         "message": "There is no /api/no-such-thing; see /api/docs for every endpoint."},
                               "request_id": response.headers["x-request-id"]}
