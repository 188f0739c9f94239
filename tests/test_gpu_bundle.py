"""The GPU lease kit works before a GPU is lent: a session that draws one has 15 minutes of device time and one
prepared command (`bash bench/gpu_lease.sh`), so its plumbing is proven here, on the CPU:

- `bench.gpu_bundle` carries what the machine's image lacks and the engines' pinned versions over the image's,
  never what the image has (torch, numpy);
- the lease script installs carried wheels ahead of everything, runs the benchmark (here `--smoke`: tiny weights
  on the CPU) and leaves its figures, the machine's description and its log in $OUT.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bench.gpu_bundle import PINNED_OVER_IMAGE, normalise, wheels_needed

ROOT = Path(__file__).resolve().parent.parent


def test_the_bundle_carries_what_the_image_lacks_and_the_pinned_versions() -> None:
    needed = wheels_needed(["numpy", "pydantic-settings", "PyYAML"])
    assert "numpy" not in needed, "the machine's image has numpy: it must not travel (its build matches torch's)"
    assert "pyyaml" not in needed
    assert needed == {"pydantic-settings": _version("pydantic-settings")}
    assert normalise("huggingface_hub") in PINNED_OVER_IMAGE


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="make setup-fish installs transformers")
def test_the_engines_pinned_transformers_travels_although_the_image_has_one() -> None:
    assert wheels_needed(["transformers", "torch"]) == {"transformers": _version("transformers")}


def test_the_lease_script_installs_the_wheels_and_leaves_its_figures(tmp_path: Path) -> None:
    """LEASE_S=400: the bench's outer limit is what the lease has left (less than BUDGET_S + SPARE_S), its budget
    that less SPARE_S or half of it; the weights it kept for the peer are gone at the end."""
    wheels, site, out, weights = tmp_path / "whl", tmp_path / "site", tmp_path / "out", tmp_path / "weights"
    wheels.mkdir()
    _write_wheel(wheels, "lockn_lease_probe", "VALUE = 42\n")
    env = {**os.environ, "WHEELS": str(wheels), "SITE": str(site), "OUT": str(out), "PY": sys.executable,
           "LEASE_S": "400", "BUDGET_S": "120", "SPARE_S": "300", "WEIGHTS": str(weights),
           "PEER_WHEELS": str(tmp_path / "no-peer")}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_lease.sh"), "--smoke", "--engines", "fish"],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (site / "lockn_lease_probe" / "__init__.py").read_text() == "VALUE = 42\n", "the carried wheel is installed"
    assert "torch" in (out / "env.txt").read_text()
    log = (out / "lease.log").read_text()
    assert "1 wheels installed" in log and "GPU engines measured" in log
    assert "make gpu-bundle-peer" in log, "then the peer's lease, skipped without its bundle (tests/test_peer_qwen.py)"
    assert re.search(r"\d+ (passed|skipped)", log), "the GPU-only tests ran first (skipped where there is no GPU)"
    budget, within = map(int, re.search(r"budget (\d+)s \(within (\d+)s", log).groups())
    assert within < 400 and budget == within // 2, (budget, within)
    assert not weights.exists(), "the weights kept for the peer are removed at the end"
    if importlib.util.find_spec("fish_speech") is not None:
        steps = json.loads((out / "gpu.json").read_text())["steps"]
        assert [step["streams"] for step in steps] == [1, 2] and steps[0]["audio_s"] > 0


def test_the_lease_script_says_what_is_missing_without_wheels(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_lease.sh")], capture_output=True, text=True,
                          env={**os.environ, "WHEELS": str(tmp_path / "none"), "OUT": str(tmp_path / "out")},
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "make gpu-bundle" in done.stdout


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _write_wheel(folder: Path, package: str, source: str) -> None:
    """A minimal pure-Python wheel (what `make gpu-bundle` carries, in miniature)."""
    info = f"{package}-1.0.dist-info"
    files = {f"{package}/__init__.py": source,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: lockn-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{name},sha256={_digest(text)},{len(text.encode())}" for name, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / f"{package}-1.0-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
