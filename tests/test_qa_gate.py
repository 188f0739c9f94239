"""The release gate: recorded QA runs, JUnit parsing, promote's refusals and hook, the nightly schedule,
and the report route. Real databases (SQLite and PostgreSQL), real git repositories, real pytest runs.

The nightly task itself runs against the app the QA suite starts: see qa/test_qa_gate.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from backend.ops import qa_gate
from backend.core.models import utcnow
from backend.services.status import qa_runs
from backend.services.status.qa_runs import QaCounts
from backend.core.settings import PROJECT_ROOT, Settings, get_settings

SOURCE = "http://staging.example.test:3000"
GREEN = QaCounts(passed=9, failed=0, skipped=2)
RED = QaCounts(passed=7, failed=2, skipped=2)


def record(target: str = SOURCE, passed: bool = True, hours_ago: float = 0.0, trigger: str = "manual",
           report: Path | None = None) -> qa_runs.QaRun:
    """A finished run, as the gate records it, `hours_ago` hours in the past."""
    finished = utcnow() - timedelta(hours=hours_ago)
    return qa_runs.record(target, trigger, finished - timedelta(minutes=2), finished, GREEN if passed else RED,
                          passed, report)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.ops.cli", *args], cwd=PROJECT_ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A throwaway git repository with one commit, to be tagged."""
    path = tmp_path / "repo"
    path.mkdir()
    for args in (["init", "-q"], ["-c", "user.name=QA", "-c", "user.email=qa@example.test", "commit", "-q",
                                  "--allow-empty", "-m", "release candidate"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)
    return path


def tags(repo: Path) -> list[str]:
    return subprocess.run(["git", "-C", str(repo), "tag", "--list"], capture_output=True, text=True,
                          check=True).stdout.split()


# --- recorded runs -----------------------------------------------------------------------------------------


def test_runs_are_recorded_and_the_newest_per_target_is_found(database: str) -> None:
    assert qa_runs.last_run(SOURCE) is None
    old = record(hours_ago=5)
    newest = record(target=SOURCE + "/", passed=False, hours_ago=1, trigger="nightly")
    other = record(target="https://prod.example.test", hours_ago=0.5, trigger="deploy")

    assert newest.target == SOURCE, "a trailing slash names the same deployment"
    last = qa_runs.last_run(SOURCE + "/")
    assert last is not None and last.id == newest.id and not last.passed and last.trigger == "nightly"
    assert (last.passed_count, last.failed_count, last.skipped_count) == (7, 2, 2)
    assert last.finished_at.tzinfo is not None
    assert [run.id for run in qa_runs.list_runs(SOURCE)] == [newest.id, old.id]
    assert qa_runs.last_run().id == other.id, "without a target: the newest run anywhere"


def test_bad_targets_and_triggers_are_refused_by_name(database: str) -> None:
    with pytest.raises(qa_runs.InvalidQaRun, match="trigger 'weekly'"):
        record(trigger="weekly")
    with pytest.raises(qa_runs.InvalidQaRun, match="not a base URL"):
        record(target="staging:3000")
    assert qa_runs.list_runs() == []


def test_reports_are_served_only_from_the_data_directory(database: str, isolated_settings: Path,
                                                          tmp_path: Path) -> None:
    inside = isolated_settings / "qa-reports" / "r.html"
    inside.parent.mkdir(parents=True)
    inside.write_text("<html>report</html>")
    outside = tmp_path / "elsewhere.html"
    outside.write_text("<html>not ours</html>")
    assert qa_runs.report_file(record(report=inside).id) == inside.resolve()
    for run in (record(report=outside), record(report=isolated_settings / "qa-reports" / "gone.html"), record()):
        with pytest.raises(qa_runs.QaRunNotFound):
            qa_runs.report_file(run.id)


# --- JUnit XML and the suite ---------------------------------------------------------------------------------


def test_junit_counts_come_from_a_real_pytest_run(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture failed")

        def test_passes(): assert True
        def test_fails(): assert 1 == 2
        def test_errors(broken): pass
        def test_skips(): pytest.skip("not here")
    """))
    junit = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                    "test_sample.py"], cwd=tmp_path, capture_output=True, timeout=120)
    assert qa_gate.parse_junit(junit) == QaCounts(passed=1, failed=2, skipped=1)


def test_qa_cli_against_nothing_records_a_failed_run_with_its_report(database: str, closed_port: int,
                                                                     tmp_path: Path) -> None:
    target = f"http://127.0.0.1:{closed_port}"
    artifacts = tmp_path / "artifacts"
    result = cli("qa", "--base-url", target, "--trigger", "deploy", "--artifacts", str(artifacts))
    assert result.returncode == 1, result.stderr
    assert "nothing answers at" in result.stdout, "the suite says why every test errored"
    run = qa_runs.last_run(target)
    assert run is not None and not run.passed and run.trigger == "deploy"
    assert run.passed_count == 0 and run.failed_count >= 5
    assert f"QA run {run.id} against {target} FAILED" in result.stdout
    assert (artifacts / "junit.xml").exists() and (artifacts / "report.html").exists()
    report = qa_runs.report_file(run.id)
    assert report.parent == get_settings().data_dir / "qa-reports" and "nothing answers at" in report.read_text()


@pytest.fixture
def bare_site() -> Iterator[str]:
    """A web server that is alive (`/health/live`) but has no development identity provider and no API:
    what the suite meets at a deployment that signs in through Auth0, run without LOCKN_QA_KEY."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = b'{"status": "ok"}' if self.path == "/health/live" else b"not here"
            self.send_response(200 if self.path == "/health/live" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_sign_in_and_api_checks_skip_with_their_reason_where_they_cannot_run(bare_site: str, tmp_path: Path) -> None:
    env = {**os.environ, "LOCKN_BASE_URL": bare_site, "LOCKN_QA_ARTIFACTS": str(tmp_path)}
    env.pop("LOCKN_QA_KEY", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-m", "smoke", "-p", "no:cacheprovider", "-rs",
                             "qa/test_release_smoke.py", "qa/test_api_release_gate.py"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "3 skipped" in result.stdout, result.stdout[-3000:]
    assert f"no development identity provider at {bare_site}/dev-idp/.well-known/openid-configuration" in result.stdout
    assert "LOCKN_QA_KEY is not set" in result.stdout


def test_archived_reports_never_carry_a_key(isolated_settings: Path, tmp_path: Path) -> None:
    key = "lk_live_" + "A" * 32
    files = qa_gate.SuiteFiles(tmp_path / "artifacts")
    files.clear()
    files.junit.write_text(f'<testsuite><testcase name="t"><failure message="401 for {key}"/></testcase></testsuite>')
    files.html.write_text(f"<html><pre>Authorization: Bearer {key}</pre></html>")
    archived = qa_gate.archive_report(files, "qa_0123")
    assert archived == isolated_settings / "qa-reports" / "qa_0123.html"
    for path in (archived, files.html, files.junit):
        text = path.read_text()
        assert key not in text and "lk_live_AAAA…" in text, path


# --- promote ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("history, reason", [
    ([], "no QA run against http://staging.example.test:3000 has been recorded"),
    ([{"passed": True, "hours_ago": 3}, {"passed": False, "hours_ago": 1}], "did not pass"),
    ([{"passed": True, "hours_ago": 30}], "passed, but 30.0 h ago (LOCKN_PROMOTE_MAX_AGE_H allows 24 h)"),
    ([{"passed": True, "hours_ago": 1, "target": "http://other.example.test"}], "has been recorded"),
])
def test_promote_refuses_without_a_recent_passing_run(database: str, repo: Path, tmp_path: Path,
                                                      history: list[dict], reason: str) -> None:
    for run in history:
        record(**run)
    hook_ran = tmp_path / "promoted"
    result = cli("promote", "--from", SOURCE, "--to", "prod", "--repo", str(repo),
                 env={"LOCKN_PROMOTE_COMMAND": f"touch {hook_ran}"})
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: refusing to promote {SOURCE} to prod: ") and reason in result.stderr
    assert tags(repo) == [] and not hook_ran.exists()


def test_promote_tags_and_runs_the_hook_with_from_and_to(database: str, repo: Path, tmp_path: Path) -> None:
    record(passed=False, hours_ago=2)
    record(passed=True, hours_ago=1)
    out = tmp_path / "hook.txt"
    result = cli("promote", "--from", SOURCE + "/", "--to", "prod", "--repo", str(repo),
                 env={"LOCKN_PROMOTE_COMMAND": f'printf "%s|%s|%s" "$FROM" "$TO" "$RELEASE_TAG" > {out}'})
    assert result.returncode == 0, result.stderr
    [tag] = tags(repo)
    assert tag.startswith("release-") and len(tag) == len("release-20261125T031500Z") and tag.endswith("Z")
    assert out.read_text() == f"{SOURCE}|prod|{tag}"
    assert f"promoted {SOURCE} to prod: tagged {tag}" in result.stdout


def test_a_failing_hook_fails_the_promotion_and_removes_its_tag(database: str, repo: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    record()
    monkeypatch.setenv("LOCKN_PROMOTE_COMMAND", "exit 3")
    get_settings.cache_clear()
    with pytest.raises(qa_gate.QaGateError, match=r"LOCKN_PROMOTE_COMMAND exited with 3; the tag release-\S+ was "
                                                  r"removed again"):
        qa_gate.promote(SOURCE, "prod", repo=repo)
    assert tags(repo) == []


def test_promote_honours_a_configured_max_age(database: str, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record(hours_ago=3)
    monkeypatch.setenv("LOCKN_PROMOTE_MAX_AGE_H", "2")
    get_settings.cache_clear()
    with pytest.raises(qa_gate.PromotionRefused, match="allows 2 h"):
        qa_gate.promote(SOURCE, "prod", repo=repo)
    monkeypatch.setenv("LOCKN_PROMOTE_MAX_AGE_H", "4")
    get_settings.cache_clear()
    assert qa_gate.promote(SOURCE, "prod", repo=repo) in tags(repo)


# --- nightly schedule ---------------------------------------------------------------------------------------


def test_nightly_schedule_is_built_from_settings() -> None:
    from backend.queue.app import qa_beat_schedule
    from backend.queue.routing import QA_QUEUE, QA_TASK

    assert qa_beat_schedule(Settings()) == {}, "off by default"
    [entry] = qa_beat_schedule(Settings(qa_nightly_at="02:30")).values()
    assert entry["task"] == QA_TASK == "lockn.qa_regression" and entry["options"] == {"queue": QA_QUEUE}
    assert entry["schedule"].hour == {2} and entry["schedule"].minute == {30}
    for bad in ("2:30", "24:00", "02:60", "nightly"):
        with pytest.raises(ValidationError, match="qa_nightly_at"):
            Settings(qa_nightly_at=bad)


def test_the_celery_app_carries_the_schedule_and_routes_the_task_to_its_queue(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.queue.app import create_celery

    monkeypatch.setenv("LOCKN_QA_NIGHTLY_AT", "23:05")
    get_settings.cache_clear()
    app = create_celery()
    assert app.conf.timezone == "UTC"
    assert app.conf.beat_schedule["nightly-qa"]["schedule"].hour == {23}
    assert app.amqp.router.route({}, "lockn.qa_regression")["queue"].name == "qa"
    from workers.tasks import qa_regression

    assert qa_regression.acks_late is False, "a second delivery of a long run would record the same night twice"


def test_beat_refuses_to_start_when_nightly_qa_is_off(capsys: pytest.CaptureFixture[str]) -> None:
    from backend.ops.cli import main
    from backend.ops.qa_cli import beat_command

    assert main(["beat"]) == 2
    assert "nightly QA is off: set LOCKN_QA_NIGHTLY_AT=HH:MM (UTC)" in capsys.readouterr().err
    command = beat_command(Settings(qa_nightly_at="03:00"))
    assert {"--beat", "solo"} <= set(command) and command[command.index("--queues") + 1] == "qa"


# --- the report route -----------------------------------------------------------------------------------------


def test_report_route_for_a_signed_in_user_or_a_key_with_keys_read(key_service, isolated_settings: Path) -> None:
    from backend.api import build_api
    from backend.services.accounts import sessions
    from backend.services.keys.service import KeySpec

    report = isolated_settings / "qa-reports" / "run.html"
    report.parent.mkdir(parents=True)
    report.write_text("<!DOCTYPE html><title>report.html</title><p>9 passed</p>")
    run = record(report=report)
    path = f"/api/qa/runs/{run.id}/report"
    client = TestClient(build_api())

    assert client.get(path).status_code == 401
    tts_only = key_service.create("auth0|dev", KeySpec("tts", scopes=("tts:read",)))[1]
    assert client.get(path, headers={"Authorization": f"Bearer {tts_only}"}).status_code == 403
    reader = key_service.create("auth0|ops", KeySpec("ops", scopes=("keys:read",)))[1]
    keyed = client.get(path, headers={"Authorization": f"Bearer {reader}"})
    assert keyed.status_code == 200 and "9 passed" in keyed.text
    assert keyed.headers["content-type"].startswith("text/html")
    assert "sandbox" in keyed.headers["content-security-policy"]

    session = sessions.start_session({"sub": "auth0|grace", "email": "grace@example.test"}, None, None)
    client.cookies.set(sessions.COOKIE_NAME, sessions.sign(session.id))
    assert client.get(path).status_code == 200
    missing = client.get("/api/qa/runs/qa_nope/report")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
