"""Every benchmark the README quotes still runs: each in its smoke mode, as a person would start it.

The figures of a smoke run mean nothing (a few requests on a busy machine) and are not checked;
what is checked is that the bench starts its stack, measures and prints its summary line, so a
refactoring that breaks a bench fails here instead of in the next person's hands.
"""

from __future__ import annotations

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
}


def test_every_bench_the_readme_quotes_is_smoke_tested() -> None:
    quoted = set(re.findall(r"\bbench\.[a-z_]+", (ROOT / "README.md").read_text()))
    assert quoted and quoted <= set(BENCHES)


@pytest.mark.parametrize("bench", sorted(BENCHES))
def test_bench_runs_in_smoke_mode(bench: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKN_")}
    result = subprocess.run([sys.executable, "-m", bench, "--smoke"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert BENCHES[bench] in result.stdout, result.stdout[-2000:]
