"""Every benchmark the README quotes still runs: each in its smoke mode, as a person would start it.

The figures of a smoke run mean nothing (a few requests on a busy machine) and are not checked;
what is checked is that the bench starts its stack, measures and prints its summary line, so a
refactoring that breaks a bench fails here instead of in the next person's hands.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: bench module → a line its report always ends with.
BENCHES = {
    "bench.keys": "request log on / off",
    "bench.synthesis": "queue overhead",
    "bench.speech": "cache: miss",
    "bench.soak": "resident memory over time",
    "bench.flood": "trickling server",
    "bench.gpu": "GPU engines measured",
    "bench.peer_qwen": "peer steps measured",
}


def test_every_bench_the_readme_quotes_is_smoke_tested() -> None:
    quoted = set(re.findall(r"\bbench\.[a-z_]+", (ROOT / "README.md").read_text()))
    assert quoted and quoted <= set(BENCHES)


def test_benches_import_nothing_a_users_install_lacks() -> None:
    """Issue 27, item 8: `make run` installs no pytest, so no bench may reach pytest (`tests/conftest.py`
    imports it) through any chain of the project's imports, lazy ones included."""
    from tests.test_architecture import imports_of, module_name

    files = {module_name(path): path for folder in ("bench", "backend", "workers", "tests")
             for path in (ROOT / folder).rglob("*.py")}
    reached, todo, forbidden = set(), [name for name in files if name.startswith("bench.")], []
    while todo:
        module = todo.pop()
        if module in reached:
            continue
        reached.add(module)
        for imported in imports_of(files[module]):
            if imported.split(".")[0] in ("pytest", "_pytest"):
                forbidden.append(f"{module} -> {imported}")
            todo += [name for name in (imported, imported.rpartition(".")[0]) if name in files]
    assert not forbidden, forbidden


@pytest.mark.parametrize("bench", sorted(BENCHES))
def test_bench_runs_in_smoke_mode(bench: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKN_")}
    result = subprocess.run([sys.executable, "-m", bench, "--smoke"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert BENCHES[bench] in result.stdout, result.stdout[-2000:]
    if bench == "bench.gpu" and "GPU engines measured: 0" not in result.stdout:  # the engines' layer installed
        assert re.search(r"frame step fish +1 row\(s\) × +\d+ columns +[\d.]+ ms", result.stdout), \
            "one frame step timed alone, per bucket and span"
        installed = sum(importlib.util.find_spec(name) is not None for name in ("fish_speech", "qwen_tts"))
        assert f"GPU engines measured: {installed} in" in result.stdout, "each in a process of its own, figures kept"


def test_a_bench_client_that_is_refused_stops_the_figures(closed_port: int) -> None:
    """Issue 27, item 8: one of bench.speech's 4 clients died on a 429 and the figures were printed from the
    other three. Now a failed client stops the bench with why (here: every other request answered 429)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from itertools import count

    from bench.speech import run_clients

    answered = count()

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            status = 429 if next(answered) % 2 else 200
            self.send_response(status)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"RIFF")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", closed_port), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(SystemExit, match="clients failed"):
            run_clients(f"http://127.0.0.1:{closed_port}", "lk_test_unused", 2, 4, count())
    finally:
        server.shutdown()
