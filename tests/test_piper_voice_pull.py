"""`models pull piper-<voice id>`: a Piper voice from the hub's voices repository (rhasspy/piper-voices' layout),
served by a real HTTP server on loopback (`tests/fake_hub.py`) reached through HF_ENDPOINT as a mirror would be.
The voice is the bundled one's model under another id, so it really speaks; a CPU worker already running offers it
within a beat of the pull and speaks a job with it through the real queue.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.media.model_catalog import PIPER_VOICES_REPO, PIPER_VOICES_REVISION, READY_MARKER, pulled
from tests.conftest import reset_caches
from tests.fake_hub import FakeHub, cli, hub_endpoint, resolved_files
from workers.engine_loader import build_engine
from workers.engines.piper import installed_voice_models

VOICE = "en_GB-ada-medium"
BUNDLED = "en_US-joe-medium"
NAME = f"piper-{VOICE}"
#: Where the voices repository keeps this voice (language family / language / dataset / quality).
VOICE_FOLDER = "en/en_GB/ada/medium"
OWNER = "auth0|ada"


def add_voice(repo: Path, folder: str, voice: str, config_change: dict | None = None) -> None:
    """The bundled voice's model and config under `folder/voice.onnx(.json)` of the repository, its config
    naming its own dataset (and changed by `config_change`: a config that is not Piper's)."""
    bundled = installed_voice_models()[0]
    (repo / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy(bundled, repo / folder / f"{voice}.onnx")
    config = {**json.loads(bundled.with_suffix(".onnx.json").read_text()), "dataset": voice.split("-")[1]}
    if config_change is not None:
        config = config_change
    (repo / folder / f"{voice}.onnx.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def voices_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The voices repository as the hub holds it: two voices and the files beside them no pull needs."""
    repo = tmp_path_factory.mktemp("hub") / "piper-voices"
    add_voice(repo, VOICE_FOLDER, VOICE)
    add_voice(repo, "en/en_US/other/low", "en_US-other-low")
    (repo / VOICE_FOLDER / "MODEL_CARD").write_text("dataset: ada\n")
    (repo / "voices.json").write_text("{}")
    return repo


@pytest.fixture
def hub(voices_repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    with hub_endpoint({PIPER_VOICES_REPO: voices_repo}, monkeypatch, tmp_path / "hf-home") as server:
        yield server


def test_a_pulled_voice_is_offered_and_spoken_by_a_running_cpu_worker(hub: FakeHub, isolated_settings: Path,
                                                                      embedded_broker, database) -> None:
    """A CPU worker runs before the pull: within a beat of the pull its heartbeat offers the voice (no restart),
    a job with it succeeds (its pool process loads the voice before the job; the same text again is the cached
    audio), the voice's files replaced are spoken afresh (not from the cache), and once the voice is
    removed it is offered no more."""
    from backend.ops.supervisor import Supervisor, worker_command
    from backend.services.jobs.service import enqueue_synthesis
    from tests.conftest import wait_for_worker_heartbeat
    from tests.test_engine_failures import wait_for_engine
    from tests.conftest import wait_for_job

    def offered(voice_ids: set[str]) -> None:
        wait_for_engine("piper", lambda engine: {voice["id"] for voice in engine["voices"]} == voice_ids)

    def spoken(voice: str):  # type: ignore[no-untyped-def]
        status = wait_for_job(enqueue_synthesis(OWNER, "Hello from a pulled voice.", voice, "wav").id, OWNER)
        assert (status.status, status.engine) == ("succeeded", "piper"), status.error
        return status

    supervisor = Supervisor()
    supervisor.start("cpu-worker", worker_command(queues="cpu"), env={**os.environ, "LOCKN_ENGINES": "piper"})
    try:
        wait_for_worker_heartbeat(timeout_s=120)
        offered({BUNDLED})
        result = cli("models", "pull", NAME)
        assert result.returncode == 0, result.stderr
        assert "running CPU workers offer it within seconds" in result.stdout
        assert resolved_files(hub) == {f"{VOICE_FOLDER}/{VOICE}.onnx", f"{VOICE_FOLDER}/{VOICE}.onnx.json"}, \
            "only the asked voice's model and config"
        assert any(f"/revision/{PIPER_VOICES_REVISION}" in path for _, path, _ in hub.requests), "the release"
        folder = pulled(isolated_settings / "models", NAME)
        assert folder is not None and (folder / READY_MARKER).is_file()
        row = next(line for line in cli("models", "list").stdout.splitlines() if line.startswith(NAME))
        assert "ready" in row and PIPER_VOICES_REPO in row, row

        offered({BUNDLED, VOICE})
        first = spoken(VOICE)
        assert Path(first.audio_path).stat().st_size > 10_000
        assert spoken(VOICE).audio_path == first.audio_path, "the same request again: the cached audio"

        replaced_config = folder / VOICE_FOLDER / f"{VOICE}.onnx.json"  # the voice's files replaced in place
        replaced_config.write_text(replaced_config.read_text().replace('"ada"', '"ada-2"'))
        wait_for_engine("piper", lambda engine: any(voice["name"].startswith("Ada-2") for voice in engine["voices"]))
        again = spoken(VOICE)
        assert again.audio_path != first.audio_path, "a replaced voice is never answered with the old one's audio"

        assert cli("models", "remove", NAME).returncode == 0
        offered({BUNDLED})
    finally:
        supervisor.stop_all()


def test_a_pulled_voice_speaks_in_the_engine(hub: FakeHub, isolated_settings: Path) -> None:
    assert cli("models", "pull", NAME).returncode == 0
    engine = build_engine("piper")
    assert VOICE in [voice.id for voice in engine.voices()]
    engine.load()
    audio = np.concatenate(list(engine.synthesize("A voice from the hub.", VOICE)))
    assert audio.size > engine.sample_rate(VOICE) // 2 and float(np.sqrt(np.mean(audio ** 2))) > 0.01, \
        "half a second or more of audible speech"


@pytest.mark.parametrize("name", ["piper-english", "piper-en_GB-ada-ultra", "lessac", "piper-../../etc-x-low"])
def test_a_name_that_is_no_model_is_refused_saying_what_names_are(name: str, isolated_settings: Path) -> None:
    result = cli("models", "pull", name)
    assert result.returncode == 2, result.stdout
    assert f"no model is called {name!r}" in result.stderr and "piper-<voice id>" in result.stderr
    assert "qwen3-custom" in result.stderr and "Traceback" not in result.stderr
    assert not (isolated_settings / "models").exists() or not any((isolated_settings / "models").iterdir())


def test_a_config_that_is_not_pipers_is_no_voice(hub: FakeHub, voices_repo: Path, isolated_settings: Path) -> None:
    """The hub serves a JSON config without Piper's fields: the pull fails saying so and nothing is a voice."""
    add_voice(voices_repo, "en/en_GB/bad/low", "en_GB-bad-low", config_change={"tts_model_type": "base"})
    result = cli("models", "pull", "piper-en_GB-bad-low")
    assert result.returncode == 1, result.stdout
    assert "en_GB-bad-low.onnx.json is not a Piper voice config" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert pulled(isolated_settings / "models", "piper-en_GB-bad-low") is None
    reset_caches()
    assert "en_GB-bad-low" not in [voice.id for voice in build_engine("piper").voices()]


def test_a_voice_the_repository_lacks_is_said_as_such(hub: FakeHub, isolated_settings: Path) -> None:
    result = cli("models", "pull", "piper-de_DE-nobody-medium")
    assert result.returncode == 1, result.stdout
    assert (f"{PIPER_VOICES_REPO} has no voice de_DE-nobody-medium at {PIPER_VOICES_REVISION} (no "
            "de/de_DE/nobody/medium/de_DE-nobody-medium.onnx)") in result.stderr, result.stderr
    assert f"https://huggingface.co/{PIPER_VOICES_REPO}" in result.stderr and "Traceback" not in result.stderr
