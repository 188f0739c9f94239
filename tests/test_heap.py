"""Server processes freeze what they built at start, so a full garbage collection never walks it again.

Measured before: a full collection in the web process walked ~220,000 start-up objects for 238-251 ms with the GIL
held (a `gc.callbacks` probe during `python -m bench.flood`), and every request in flight waited: it was the flood
bench's p99 in whichever phase the pause fell. Each check runs a real server-side entry point in a process of its
own: freezing belongs to a process that keeps what it built, never to the test process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def heap_after(code: str) -> tuple[int, int]:
    """Objects frozen, and objects a full collection still walks, after `code` ran in a fresh interpreter."""
    probe = code + "\nimport gc; gc.collect(); print(gc.get_freeze_count(), len(gc.get_objects()))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=dict(os.environ), capture_output=True,
                         text=True, timeout=300, check=True).stdout
    frozen, walked = out.split()[-2:]
    return int(frozen), int(walked)


def test_the_api_server_never_walks_its_startup_objects_again(isolated_settings) -> None:
    frozen, walked = heap_after("from backend.api import serve_api; serve_api()")
    assert frozen > 50_000, f"only {frozen} objects frozen"
    assert walked < frozen / 10, f"a full collection still walks {walked} objects ({frozen} frozen)"


def test_building_the_api_in_a_test_freezes_nothing(isolated_settings) -> None:
    """Tests build an app per test in one process: freezing there would keep every test's garbage for good."""
    frozen, _ = heap_after("from backend.api import build_api; build_api()")
    assert frozen == 0
