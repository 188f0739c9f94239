"""`models pull|list|remove` against a real HTTP server on loopback that answers the model hub's file API
(`tests/fake_hub.py`) for a tiny Qwen3-TTS checkpoint made here (`tests/qwen_tiny.py`), reached through
HF_ENDPOINT exactly as a mirror would be: a pull a worker then speaks with through the real queue, a pull cut off
and resumed, a gated repository, a hub that goes away mid-file, a disk that is short, and what `models list` says.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.media.model_catalog import CATALOG, READY_MARKER, pulled
from tests.conftest import reset_caches
from tests.fake_hub import COMMIT, ROOT, FakeHub, cli, hub_endpoint, resolved_files

if importlib.util.find_spec("qwen_tts") is None or importlib.util.find_spec("huggingface_hub") is None:
    if os.environ.get("LOCKN_REQUIRE_QWEN") == "1":
        raise RuntimeError("LOCKN_REQUIRE_QWEN=1 but qwen-tts is not installed: run `make setup-qwen`")
    pytest.skip("qwen-tts is not installed: `make setup-gpu` installs it", allow_module_level=True)

REPO = CATALOG["qwen3-custom"].repo
OWNER = "auth0|ada"
#: Where the hub's copy of the big file is cut (the tiny model.safetensors is ~2 MB).
CUT_AT = 1_500_000


@pytest.fixture(scope="module")
def repo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository as the hub holds it: the tiny CustomVoice checkpoint, plus files the engine never loads."""
    from tests.qwen_tiny import make_tiny_qwen_checkpoint

    folder = make_tiny_qwen_checkpoint(tmp_path_factory.mktemp("hub") / "qwen3-custom", "custom_voice")
    (folder / "README.md").write_text("# model card\n")
    (folder / "flax_model.msgpack").write_bytes(b"\0" * 4096)
    return folder


@pytest.fixture
def hub(repo_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    with hub_endpoint({REPO: repo_folder}, monkeypatch, tmp_path / "hf-home") as server:
        yield server


def repo_size(folder: Path, names: list[str]) -> int:
    return sum((folder / name).stat().st_size for name in names)


def test_pull_lists_and_a_worker_speaks_with_it(hub: FakeHub, repo_folder: Path, isolated_settings: Path,
                                                 embedded_broker, database, key_service) -> None:
    """Before the pull a qwen3 worker says "no weights: run …" (status card, voice listing, job refused with a
    503 that says so); after it, with no variable set, the same worker speaks a preset voice from the real queue."""
    from fastapi.testclient import TestClient

    from backend.api import build_api
    from backend.services.keys.service import KeySpec
    from backend.ops.supervisor import Supervisor, worker_command
    from backend.services.common.errors import ServiceUnavailable
    from backend.services.status.health import service_cards
    from backend.services.jobs.service import enqueue_synthesis
    from tests.conftest import wait_for_worker_heartbeat
    from tests.conftest import wait_for_job
    from tests.test_qwen3 import MAX_NEW_TOKENS

    env = {**os.environ, "LOCKN_ENGINES": "qwen3", "LOCKN_QWEN_DEVICE": "cpu", "OMP_NUM_THREADS": "1",
           "LOCKN_QWEN_MAX_NEW_TOKENS": str(MAX_NEW_TOKENS)}
    for name in ("LOCKN_QWEN_CHECKPOINT_DIR", "LOCKN_QWEN_CLONE_CHECKPOINT_DIR"):
        env.pop(name, None)
    command = "python -m backend.ops.cli models pull qwen3-custom"
    supervisor = Supervisor()
    supervisor.start("gpu-worker", worker_command(queues="gpu"), env=env)
    try:
        wait_for_worker_heartbeat(timeout_s=120)
        card = next(c for c in service_cards() if c["name"] == "Engine qwen3")
        assert card["status"] == "down" and f"no weights: run `{command}`" in card["detail"]
        with pytest.raises(ServiceUnavailable, match=f"needs the qwen3 engine.*no weights: run `{command}`"):
            enqueue_synthesis(OWNER, "Hello there.", "qwen3-aiden", "wav")
        api = TestClient(build_api())
        key = key_service.create(OWNER, KeySpec("gpu", scopes=("tts:read", "tts:write")))[1]
        listed = api.get("/api/voice/voices", headers={"Authorization": f"Bearer {key}"}).json()
        assert listed["data"] == [] and listed["unavailable"][0]["engine"] == "qwen3"
        assert f"no weights: run `{command}`" in listed["unavailable"][0]["reason"]
        refused = api.post("/api/voice/jobs", headers={"Authorization": f"Bearer {key}"},
                           json={"text": "Hello.", "voice": "qwen3-aiden"})
        assert refused.status_code == 503 and command in refused.json()["error"]["message"], refused.json()
    finally:
        supervisor.stop_all()

    result = cli("models", "pull", "qwen3-custom")
    assert result.returncode == 0, result.stderr
    folder = pulled(isolated_settings / "models", "qwen3-custom")
    assert folder is not None and (folder / READY_MARKER).is_file()
    wanted = sorted(p.relative_to(repo_folder).as_posix() for p in repo_folder.rglob("*")
                    if p.is_file() and p.name not in ("README.md", "flax_model.msgpack"))
    assert resolved_files(hub) == set(wanted), "only the files the engine loads are downloaded"
    size = repo_size(repo_folder, wanted)
    assert f"{len(wanted)} files" in result.stdout and "to download" in result.stdout and "free" in result.stdout
    assert not (isolated_settings / "models" / ".staging" / "qwen3-custom").exists()

    listing = cli("models", "list").stdout
    row = next(line for line in listing.splitlines() if line.startswith("qwen3-custom "))
    assert "ready" in row and COMMIT[:12] in row and f"{size / 1e6:.1f} MB" in row, listing
    assert "not pulled" in next(line for line in listing.splitlines() if line.startswith("fish "))
    again = cli("models", "pull", "qwen3-custom")
    assert again.returncode == 0 and "already pulled" in again.stdout

    supervisor = Supervisor()
    supervisor.start("gpu-worker", worker_command(queues="gpu"), env=env)
    try:
        wait_for_worker_heartbeat(timeout_s=120)
        job = enqueue_synthesis(OWNER, "Hello from a pulled model.", "qwen3-aiden", "wav")
        status = wait_for_job(job.id, OWNER)
        assert (status.status, status.engine) == ("succeeded", "qwen3"), status.error
        assert Path(status.audio_path).stat().st_size > 1000
    finally:
        supervisor.stop_all()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_pull_resumes(hub: FakeHub, repo_folder: Path, isolated_settings: Path, stop: int) -> None:
    """A pull stopped mid-file is no model, and the next pull asks for the rest. Ctrl-C ends it at once (not
    after huggingface_hub's threads finish their files), saying how to go on; SIGKILL leaves no chance to clean."""
    hub.stall = ("model.safetensors", CUT_AT)
    process = subprocess.Popen([sys.executable, "-m", "backend.ops.cli", "models", "pull", "qwen3-custom"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert hub.stalled.wait(120), "the pull never reached the middle of model.safetensors"
        time.sleep(0.5)  # the client writes what it received
        process.send_signal(stop)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    if stop == signal.SIGINT:
        assert process.returncode == 130 and "stopped; run it again to resume" in err, err
    assert pulled(isolated_settings / "models", "qwen3-custom") is None
    assert "partial (run pull again to resume)" in cli("models", "list").stdout
    hub.stall = None
    hub.release()

    result = cli("models", "pull", "qwen3-custom")
    assert result.returncode == 0, result.stderr
    resumed = [rng for method, path, rng in hub.requests if method == "GET" and path.endswith("/model.safetensors")
               and rng]
    assert resumed and int(resumed[-1].removeprefix("bytes=").rstrip("-")) >= 2**20, hub.requests
    folder = pulled(isolated_settings / "models", "qwen3-custom")
    assert folder is not None
    assert (folder / "model.safetensors").read_bytes() == (repo_folder / "model.safetensors").read_bytes()


def test_a_gated_repo_asks_for_a_token(hub: FakeHub, isolated_settings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.gated_token = "hf_right"
    result = cli("models", "pull", "qwen3-custom")
    assert result.returncode == 1
    assert f"{REPO} is gated: accept its terms at https://huggingface.co/{REPO}" in result.stderr
    assert "HF_TOKEN=<token>" in result.stderr and "Traceback" not in result.stderr
    assert pulled(isolated_settings / "models", "qwen3-custom") is None

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    refused = cli("models", "pull", "qwen3-custom")
    assert refused.returncode == 1 and "refused the token in HF_TOKEN" in refused.stderr
    assert "hf_wrong" not in refused.stderr + refused.stdout, "the token is never printed"
    monkeypatch.setenv("HF_TOKEN", "hf_right")
    assert cli("models", "pull", "qwen3-custom").returncode == 0
    assert pulled(isolated_settings / "models", "qwen3-custom") is not None


def test_a_hub_that_goes_away_mid_file_leaves_no_model(hub: FakeHub, isolated_settings: Path) -> None:
    from workers.engine_loader import build_engine

    hub.vanish = ("model.safetensors", CUT_AT)
    result = cli("models", "pull", "qwen3-custom")
    assert result.returncode == 1, result.stdout
    assert "run again to resume" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert pulled(isolated_settings / "models", "qwen3-custom") is None
    assert not (isolated_settings / "models" / "qwen3-custom").exists()
    reset_caches()
    reason = build_engine("qwen3").unavailable_reason()
    assert reason == ("no weights: run `python -m backend.ops.cli models pull qwen3-custom` "
                      "(or set LOCKN_QWEN_CHECKPOINT_DIR)")


def test_an_unreachable_hub_and_a_short_disk_are_said_plainly(hub: FakeHub, closed_port: int,
                                                               isolated_settings: Path,
                                                               monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from backend.ops.cli import main

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    reset_caches()
    assert main(["models", "pull", "qwen3-custom"]) == 1
    assert f"cannot reach the model hub at http://127.0.0.1:{closed_port}" in capsys.readouterr().err

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    reset_caches()
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=10**6))
    assert main(["models", "pull", "qwen3-custom"]) == 1
    err = capsys.readouterr().err
    assert "the disk is short" in err and "1.0 MB free" in err
    assert not any(method == "GET" and "/resolve/" in path for method, path, _ in hub.requests), "nothing fetched"


def test_remove_forgets_the_model(hub: FakeHub, isolated_settings: Path) -> None:
    assert cli("models", "pull", "qwen3-custom").returncode == 0
    removed = cli("models", "remove", "qwen3-custom")
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert pulled(isolated_settings / "models", "qwen3-custom") is None
    assert not (isolated_settings / "models" / "qwen3-custom").exists()
    assert cli("models", "remove", "qwen3-custom").returncode == 1


def test_a_hub_listing_files_outside_the_repository_is_refused(hub: FakeHub, isolated_settings: Path) -> None:
    """huggingface_hub joins listed names to the download folder as they are: `../` would write elsewhere."""
    hub.extra_siblings = [{"rfilename": "../../escape.json", "size": 10}]
    result = cli("models", "pull", "qwen3-custom")
    assert result.returncode == 1 and "lists files outside the repository" in result.stderr, result.stderr
    assert not any("/resolve/" in path for _, path, _ in hub.requests), "nothing was downloaded"
    assert not (isolated_settings / "escape.json").exists()
    assert pulled(isolated_settings / "models", "qwen3-custom") is None
