"""An engine that fails to load, or fails its first sentence, on a GPU worker: said, never "warming up" for ever.

A GPU worker announces its engines `warming` and loads them in the background (`workers/celery_app._warm_up`). A
load that fails (no memory for the model, a damaged checkpoint) or a warm-up sentence that fails must turn that
engine into an unavailable one with the reason, in the worker's heartbeat, on `/health` and on the dashboard's
card, while the worker's other engines keep serving; its jobs fail at once instead of loading it again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.api import build_api
from backend.core import db
from backend.core.redis_client import get_redis
from backend.queue import heartbeat
from tests.conftest import reset_caches, wait_for_worker_heartbeat
from workers import engine_loader
from workers.engines.piper import installed_voice_models


def damaged_piper_voice(data_dir: Path) -> Path:
    """A Piper voice whose config is right and whose model is not an ONNX file at all (a download cut short),
    in the data dir's voice folder, beside the installed voices."""
    folder = data_dir / "voices" / "piper"
    folder.mkdir(parents=True, exist_ok=True)
    installed = installed_voice_models()[0]
    model = folder / "en_US-damaged-medium.onnx"
    model.write_bytes(b"not an onnx model, the download was cut short" * 100)
    config = json.loads(installed.with_suffix(".onnx.json").read_text())
    model.with_suffix(".onnx.json").write_text(json.dumps(config))
    return model


def wait_for_unavailable(engine: str, timeout_s: float = 120) -> str:
    """The reason a live worker gives for not running `engine`, once it gives one."""
    deadline = time.monotonic() + timeout_s
    while True:
        reasons = {name: reason for w in heartbeat.live_workers(get_redis()) for name, reason in w.unavailable.items()}
        if engine in reasons:
            return reasons[engine]
        assert time.monotonic() < deadline, f"no worker said why {engine} is unavailable"
        time.sleep(0.1)


def test_a_gpu_worker_whose_engine_fails_to_load_says_why(embedded_broker, database, isolated_settings: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.ops.supervisor import Supervisor, worker_command
    from backend.services.status.health import service_cards

    damaged_piper_voice(isolated_settings)
    monkeypatch.setenv("LOCKN_GPU_MAX_STREAMS", "2")
    reset_caches()
    db.migrate()
    supervisor = Supervisor()
    supervisor.start("gpu-worker", worker_command(queues="gpu"), env={**os.environ, "LOCKN_ENGINES": "piper"})
    try:
        wait_for_worker_heartbeat(timeout_s=120)
        reason = wait_for_unavailable("piper")
        assert reason.startswith("failed to load: ") and "Traceback" not in reason
        assert not [e for w in heartbeat.live_workers(get_redis()) for e in w.engines if e["name"] == "piper"], \
            "no longer announced (nor warming up)"
        response = TestClient(build_api()).get("/health")
        assert response.status_code == 503
        assert response.json()["checks"]["engine"]["message"] == f"piper: {reason}"
        card = next(card for card in service_cards() if card["name"] == "Engine piper")
        assert card["status"] == "down" and card["detail"] == reason
    finally:
        supervisor.stop_all()


def test_an_engine_that_fails_to_load_is_not_tried_again_and_the_others_load(isolated_settings: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`load_engines` keeps one engine's failure to itself: the reason is kept, the next call does not load it
    again (a GPU model's failed load costs its whole load time), the engines after it still load."""
    monkeypatch.setattr(engine_loader, "LOADED", {})
    monkeypatch.setattr(engine_loader, "FAILED", {})
    damaged_piper_voice(isolated_settings)
    assert engine_loader.load_engines(["piper"]) == {}
    assert engine_loader.FAILED["piper"].startswith("failed to load: ")
    (isolated_settings / "voices" / "piper" / "en_US-damaged-medium.onnx").unlink()  # mended, but not retried
    assert engine_loader.load_engines(["piper"]) == {}
    assert engine_loader.warm_up_engine("piper") == engine_loader.FAILED["piper"]


def test_an_engine_that_fails_its_first_sentence_is_dropped_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_loader, "LOADED", {})
    monkeypatch.setattr(engine_loader, "FAILED", {})
    loaded = engine_loader.load_engines(["piper"])
    assert engine_loader.warm_up_engine("piper") is None, "a sound engine speaks its warm-up sentence"

    def out_of_memory() -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail on the next line")

    monkeypatch.setattr(loaded["piper"], "warm_up", out_of_memory)
    reason = engine_loader.warm_up_engine("piper")
    assert reason == "failed its first sentence: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert "piper" not in engine_loader.LOADED, "its jobs fail at once instead of on a broken engine"
    assert engine_loader.load_engines(["piper"]) == {}


def test_a_job_for_an_engine_that_failed_to_load_fails_at_once_saying_so(database, isolated_settings: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import secrets

    from sqlmodel import Session

    from backend.core.db import get_engine
    from backend.core.models import Job
    from backend.media.engine import SynthesisError
    from backend.services.jobs import runner

    monkeypatch.setattr(engine_loader, "LOADED", {})
    monkeypatch.setattr(engine_loader, "FAILED", {})
    damaged_piper_voice(isolated_settings)
    job = Job(id="job_" + secrets.token_hex(10), owner="auth0|failed-engine", voice_id="en_US-joe-medium",
              engine="piper", text="Nobody will say this.", text_chars=21, format="wav")
    with Session(get_engine(), expire_on_commit=False) as session:
        session.add(job)
        session.commit()
    with pytest.raises(SynthesisError) as failure:
        runner.run_job(job.id, engine_loader.load_engines(["piper"]), failed=engine_loader.FAILED)
    assert str(failure.value) == ("the piper engine failed to start on this worker; the dashboard's status card and "
                                  "the worker's log say why"), "its reason (paths, driver messages) is the operator's"
    assert "onnx" not in str(failure.value).lower()
