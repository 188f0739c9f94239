"""The edges a newcomer or a hostile client meets: unknown routes, wrong methods, a refused configuration,
and the files LockN writes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from backend.api import build_api

ROOT = Path(__file__).resolve().parent.parent


def test_unknown_api_paths_and_wrong_methods_answer_in_the_json_envelope(database) -> None:
    client = TestClient(build_api())
    unknown = client.get("/api/no-such-thing")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    wrong = client.get("/v1/audio/speech")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert wrong.json()["error"]["type"] == "invalid_request_error", "OpenAI's envelope under /v1"
    put = client.put("/api/keys")
    assert put.status_code == 405 and put.json()["error"] == {
        "code": "method_not_allowed", "message": "PUT is not allowed here; use GET, POST."}


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKN_", "AUTH0_"))}
    return subprocess.run([sys.executable, "-m", "backend.ops.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, "LOCKN_DATA_DIR": str(tmp_path / "data"), **env}, timeout=120)


def test_production_refuses_development_defaults_in_a_list_without_a_traceback(tmp_path) -> None:
    refused = run_cli(tmp_path, "migrate", LOCKN_ENV="prod")
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr and "LockN will not start with LOCKN_ENV=prod" in refused.stderr
    assert refused.stderr.count("\n  - ") >= 4, refused.stderr


def test_what_lockn_writes_is_readable_by_its_owner_only(tmp_path) -> None:
    assert run_cli(tmp_path, "migrate").returncode == 0
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "lockn.db").stat().st_mode) == 0o600


def test_repeated_slashes_are_one_as_open_webui_sends_them(database) -> None:
    client = TestClient(build_api())  # Open WebUI with the base URL http://host:3000/v1/ asks for /v1//audio/…
    for path in ("/audio/models", "/audio/voices"):
        doubled, single = client.get(f"/v1/{path}"), client.get(f"/v1{path}")
        answers = [(a.status_code, {k: v for k, v in a.json().items() if k != "request_id"}) for a in (doubled, single)]
        assert answers[0] == answers[1], path
