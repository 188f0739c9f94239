"""Where workers find pulled weights (and that the checkpoint variables still win), and which torch build
`make setup-gpu` installs for a driver. No hub and no model needed: folders with and without the ready marker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.media.model_catalog import READY_MARKER
from backend.ops.torch_wheels import driver_cuda, pip_arguments, wheel_tag
from tests.conftest import reset_caches


def ready(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / READY_MARKER).write_text(json.dumps({"name": name, "revision": "abc"}))
    return folder


def test_engines_find_pulled_models_and_the_variables_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.engine_loader import build_engine

    root = tmp_path / "models"
    monkeypatch.setenv("LOCKN_MODELS_DIR", str(root))
    reset_caches()
    assert build_engine("qwen3").folders == [] and build_engine("fish").checkpoint_dir is None

    base_small = ready(root, "qwen3-base-0.6b")
    (root / "qwen3-base").mkdir()  # a download that never finished: no marker, never a model
    (root / "qwen3-base" / "config.json").write_text("{}")
    assert build_engine("qwen3").folders == [base_small], "a Base model alone is the main folder"
    custom = ready(root, "qwen3-custom")
    fish = ready(root, "fish")
    assert build_engine("qwen3").folders == [custom, base_small], "CustomVoice first, a Base one for cloning"
    assert build_engine("fish").checkpoint_dir == fish

    monkeypatch.setenv("LOCKN_QWEN_CHECKPOINT_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("LOCKN_FISH_CHECKPOINT_DIR", str(tmp_path / "fish-mine"))
    reset_caches()
    assert build_engine("qwen3").folders == [tmp_path / "mine"]
    assert build_engine("fish").checkpoint_dir == tmp_path / "fish-mine"


def test_models_dir_defaults_to_the_data_dir(isolated_settings: Path) -> None:
    from backend.core.settings import get_settings

    assert get_settings().models_path == isolated_settings / "models"


@pytest.mark.parametrize(("header", "tag"), [
    ("| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0     |", "cu130"),
    ("| NVIDIA-SMI 570.86.10   Driver Version: 570.86.10   CUDA Version: 12.8     |", "cu128"),
    ("| NVIDIA-SMI 565.57.01   Driver Version: 565.57.01   CUDA Version: 12.7     |", "cu126"),
    ("| NVIDIA-SMI 535.54.03   Driver Version: 535.54.03   CUDA Version: 12.2     |", "cpu"),
    ("", "cpu"),
])
def test_setup_gpu_picks_the_newest_torch_build_the_driver_runs(header: str, tag: str) -> None:
    assert wheel_tag(driver_cuda(header)) == tag


def test_torch_pip_arguments() -> None:
    assert pip_arguments("cpu") == ["torch==2.13.0"]
    assert pip_arguments("cu128") == ["--index-url", "https://download.pytorch.org/whl/cu128", "torch==2.13.0"]
    assert pip_arguments("cu128", "https://mirror/torch") == ["--index-url", "https://mirror/torch", "torch==2.13.0"]
