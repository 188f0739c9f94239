"""The admin CLI, run as an operator runs it: a real process, real database, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from backend.services.keys.service import build_key_service
from backend.core.settings import PROJECT_ROOT, get_settings


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.ops.cli", "keys", *args], cwd=PROJECT_ROOT,
                          env=dict(os.environ), capture_output=True, text=True, timeout=60)


def test_create_list_rotate_revoke(database: str) -> None:
    created = cli("create", "--owner", "auth0|ops", "--name", "batch job", "--scopes", "tts:read,tts:write",
                  "--env", "test", "--rate-limit", "120/minute", "--quota-chars", "50000", "--expires-in", "30d",
                  "--json")
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    assert record["key"].startswith("lk_test_") and record["rate_limit"] == "120/60s"
    service = build_key_service(get_settings())
    assert service.verify(record["key"], ("tts:write",)).id == record["id"]

    listed = cli("list", "--owner", "auth0|ops")
    assert record["id"] in listed.stdout and record["key"] not in listed.stdout

    rotated = json.loads(cli("rotate", record["id"], "--grace", "3600", "--json").stdout)
    assert rotated["rotated_from"] == record["id"] and rotated["key"] != record["key"]
    revoked = cli("revoke", rotated["id"], "--json")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"]
    service.close()


def test_errors_are_one_sentence_and_an_exit_code(database: str) -> None:
    bad_scope = cli("create", "--owner", "o", "--name", "n", "--scopes", "tts:fly")
    assert bad_scope.returncode == 2 and bad_scope.stderr.startswith("error: unknown scope tts:fly")
    bad_limit = cli("create", "--owner", "o", "--name", "n", "--rate-limit", "fast")
    assert bad_limit.returncode == 2 and "60/minute" in bad_limit.stderr
    missing = cli("revoke", "key_0000000000000000")
    assert missing.returncode == 1 and "no key with id" in missing.stderr
    assert "Traceback" not in bad_scope.stderr + bad_limit.stderr + missing.stderr
