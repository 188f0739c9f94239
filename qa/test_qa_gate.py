"""The nightly regression task, run for real against the app this suite started: it runs the smoke suite
against the deployment itself (settings.base_url) and records the run. The dashboard's view of that run is
in qa/test_dashboard.py; the gate's other rules (promote, parsing, schedule) in tests/test_qa_gate.py.
"""

from __future__ import annotations

from backend.ops.qa_gate import NIGHTLY_KEY_OWNER, describe_run
from backend.services.status import qa_runs
from backend.services.keys.service import build_key_service
from backend.core.settings import get_settings

#: The smoke tests that must have run (not skipped) against a local app with the development provider.
SMOKE_TESTS = ("test_landing_page_renders_without_errors_or_horizontal_scroll",
               "test_health_is_200_json_with_every_dependency", "test_jobs_api_over_http",
               "test_openai_sdk_speaks_through_the_running_app", "test_sign_in_then_dashboard_then_studio")


def test_nightly_task_runs_the_smoke_suite_against_the_app_and_records_it(nightly_run, base_url: str) -> None:
    assert nightly_run.trigger == "nightly" and nightly_run.target == base_url == get_settings().base_url
    assert nightly_run.passed, describe_run(nightly_run)
    assert nightly_run.failed_count == 0 and nightly_run.skipped_count == 0 and nightly_run.passed_count >= 8
    report = qa_runs.report_file(nightly_run.id).read_text()
    assert all(name in report for name in SMOKE_TESTS)
    assert report.count("data:image/png;base64,") >= 4, "landing ×2, dashboard and studio screenshots are embedded"


def test_the_nightly_key_is_revoked_when_the_run_ends(nightly_run) -> None:
    service = build_key_service(get_settings())
    try:
        keys = service.list(NIGHTLY_KEY_OWNER).keys
    finally:
        service.close()
    assert len(keys) == 1 and keys[0].revoked_at is not None
