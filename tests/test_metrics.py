"""`GET /metrics` (issue 19): Prometheus' text format, parsed with prometheus_client's own parser, counting what
a worker process did as well as the web tier; never public once a token is configured."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from backend.api import build_api
from backend.core.settings import get_settings
from backend.services.keys.service import KeySpec


def samples(client: TestClient, **headers: str) -> dict[tuple[str, tuple], float]:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain"), answer.text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def test_metrics_count_the_web_tier_and_a_job_a_worker_process_finished(worker, key_service) -> None:
    key = key_service.create("auth0|metrics", KeySpec("metrics"))[1]
    client = TestClient(build_api())
    made = client.post("/api/voice/jobs", headers={"Authorization": f"Bearer {key}"},
                       json={"text": "Count me in the metrics.", "voice": "en_US-joe-medium"})
    assert made.status_code == 202, made.text
    deadline = time.monotonic() + 60
    while client.get(f"/api/voice/jobs/{made.json()['id']}",
                     headers={"Authorization": f"Bearer {key}"}).json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.1)
    seen = samples(client)
    assert seen[("lockn_jobs_total", (("engine", "piper"), ("outcome", "succeeded")))] >= 1  # the worker's count
    assert seen[("lockn_engine_realtime_factor_count", (("engine", "piper"),))] >= 1
    assert seen[("lockn_job_queue_wait_seconds_count", (("engine", "piper"),))] >= 1
    assert seen[("lockn_http_requests_total", (("method", "POST"), ("route", "/api/voice/jobs"), ("status", "202")))] >= 1
    assert seen[("lockn_key_verifications_total", (("outcome", "ok"),))] >= 2
    assert ("lockn_queue_depth", (("queue", "cpu"),)) in seen


def test_with_a_token_metrics_are_only_for_whoever_holds_it(database, monkeypatch) -> None:
    monkeypatch.setenv("LOCKN_METRICS_TOKEN", "scrape-token-for-tests-only-0123456789")
    get_settings.cache_clear()
    client = TestClient(build_api())
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    samples(client, Authorization="Bearer scrape-token-for-tests-only-0123456789")


def test_a_file_left_empty_by_a_killed_process_does_not_break_the_scrape(database) -> None:
    from backend.core.metrics import metrics_dir

    (metrics_dir() / "counter_999999.db").write_bytes(b"")  # a process SIGKILLed while creating its file
    try:
        samples(TestClient(build_api()))
    finally:
        (metrics_dir() / "counter_999999.db").unlink()


def test_invented_http_methods_share_one_label_and_routes_stay_templates(database) -> None:
    """Issue 27, item 6: every made-up method (`X0001…`, kilobytes long) used to be a new series on every
    replica. Now they all count as `other`, and a path with an id counts under its route's template."""
    client = TestClient(build_api())
    methods = [f"X{n:04d}" + "A" * 2000 for n in range(5)]
    for method in methods:
        client.request(method, "/api/voice/jobs/job_0123456789abcdef")
        client.request(method, "/health/live")
    client.get("/api/voice/jobs/job_0123456789abcdef")
    seen = samples(client)
    labels = [dict(labels) for name, labels in seen if name == "lockn_http_requests_total"]
    # The suite's metrics folder is shared by every test of the run: other tests' methods are there too.
    from backend.api.request_id import KNOWN_METHODS, OTHER_METHOD

    assert {label["method"] for label in labels} <= KNOWN_METHODS | {OTHER_METHOD}, \
        sorted({label["method"][:12] for label in labels})
    assert any(label["method"] == "other" for label in labels)
    assert all("job_0123456789abcdef" not in label["route"] for label in labels), labels
    assert any(label["route"] == "/api/voice/jobs/{job_id}" for label in labels), labels
