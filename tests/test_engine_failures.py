"""An engine that fails to load, or fails its first sentence, on a GPU worker: said, never "warming up" for ever.

A GPU worker announces its engines `warming` and loads them in the background (`workers/celery_app._warm_up`). A
load that fails (no memory for the model, a damaged checkpoint) or a warm-up sentence that fails must turn that
engine into an unavailable one with the reason, in the worker's heartbeat, on `/health` and on the dashboard's
card, while the worker's other engines keep serving; its jobs fail at once instead of loading it again.

A prefork (CPU) worker's main process announces its engines without loading them; its pool processes report what
they loaded, and the heartbeat says that: a damaged voice is not offered, and the card names it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.api import build_api
from backend.core import db
from backend.core.redis_client import get_redis
from backend.media.model_catalog import FISH_REQUIRED_FILES
from backend.queue import heartbeat
from tests.conftest import reset_caches, wait_for_worker_heartbeat
from tests.test_piper import damaged_piper_voice
from workers.engines.piper import installed_voice_models
from workers import engine_loader

needs_fish = pytest.mark.skipif(importlib.util.find_spec("fish_speech") is None,
                                reason="fish-speech is not installed: `make setup-fish` installs it")


def damaged_fish_checkpoint(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every file a Fish checkpoint needs, each cut short (a download that stopped), as the worker's checkpoint:
    the engine looks runnable (its files are there) and fails when it loads."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FISH_REQUIRED_FILES:
        (folder / name).write_text("the download was cut short")
    monkeypatch.setenv("LOCKN_FISH_CHECKPOINT_DIR", str(folder))
    monkeypatch.setenv("LOCKN_FISH_DEVICE", "cpu")
    reset_caches()
    return folder


@contextmanager
def running_worker(queues: str, engines: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real Celery worker of `queues` running `engines` (`LOCKN_ENGINES`), in this test's environment, until
    the block ends; it has sent its first heartbeat when the block starts."""
    from backend.ops.supervisor import Supervisor, worker_command

    monkeypatch.setenv("LOCKN_ENGINES", engines)
    reset_caches()
    db.migrate()
    supervisor = Supervisor()
    supervisor.start(f"{queues}-worker", worker_command(queues=queues), env=dict(os.environ))
    try:
        wait_for_worker_heartbeat(timeout_s=120)
        yield
    finally:
        supervisor.stop_all()


def heartbeats_say(read: Callable[[list[heartbeat.WorkerInfo]], Any], what: str, timeout_s: float = 120) -> Any:
    """What `read` finds in the live workers' heartbeats, once it finds something (not None)."""
    deadline = time.monotonic() + timeout_s
    while (found := read(workers := heartbeat.live_workers(get_redis()))) is None:
        assert time.monotonic() < deadline, f"no worker said {what}: {workers}"
        time.sleep(0.1)
    return found


def wait_for_unavailable(engine: str) -> str:
    """The reason a live worker gives for not running `engine`, once it gives one."""
    return heartbeats_say(lambda workers: next((w.unavailable[engine] for w in workers if engine in w.unavailable),
                                               None), f"why {engine} is unavailable")


@needs_fish
def test_a_gpu_worker_whose_engine_fails_to_load_says_why(embedded_broker, database, isolated_settings: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.services.status.health import service_cards

    damaged_fish_checkpoint(isolated_settings / "fish-cut-short", monkeypatch)
    monkeypatch.setenv("LOCKN_GPU_MAX_STREAMS", "2")
    with running_worker("gpu", "fish", monkeypatch):
        reason = wait_for_unavailable("fish")
        assert reason == "failed to load: JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
        assert not [e for w in heartbeat.live_workers(get_redis()) for e in w.engines if e["name"] == "fish"], \
            "no longer announced (nor warming up)"
        response = TestClient(build_api()).get("/health")
        assert response.status_code == 503
        assert response.json()["checks"]["engine"]["message"] == f"fish: {reason}"
        card = next(card for card in service_cards() if card["name"] == "Engine fish")
        assert card["status"] == "down" and card["detail"] == reason


@needs_fish
def test_an_engine_that_fails_to_load_is_not_tried_again_and_the_others_load(isolated_settings: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`load_engines` keeps one engine's failure to itself: the reason is kept, the next call does not load it
    again (a GPU model's failed load costs its whole load time), the engines after it still load."""
    monkeypatch.setattr(engine_loader, "LOADED", {})
    monkeypatch.setattr(engine_loader, "FAILED", {})
    checkpoint = damaged_fish_checkpoint(isolated_settings / "fish-cut-short", monkeypatch)
    assert list(engine_loader.load_engines(["fish", "piper"])) == ["piper"]
    assert engine_loader.FAILED == {"fish": "failed to load: JSONDecodeError: Expecting value: line 1 column 1 "
                                            "(char 0)"}
    (checkpoint / "config.json").unlink()  # changed, but not tried again
    assert list(engine_loader.load_engines(["fish", "piper"])) == ["piper"]
    assert engine_loader.warm_up_engine("fish") == engine_loader.FAILED["fish"]


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


@needs_fish
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
    damaged_fish_checkpoint(isolated_settings / "fish-cut-short", monkeypatch)
    job = Job(id="job_" + secrets.token_hex(10), owner="auth0|failed-engine", voice_id="fish-default",
              engine="fish", text="Nobody will say this.", text_chars=21, format="wav")
    with Session(get_engine(), expire_on_commit=False) as session:
        session.add(job)
        session.commit()
    with pytest.raises(SynthesisError) as failure:
        runner.run_job(job.id, engine_loader.load_engines(["fish"]), failed=engine_loader.FAILED)
    assert str(failure.value) == ("the fish engine failed to start on this worker; the dashboard's status card and "
                                  "the worker's log say why"), "its reason (paths, driver messages) is the operator's"
    assert "json" not in str(failure.value).lower()


def test_a_prefork_worker_offers_only_the_voices_its_pool_loaded(embedded_broker, database, isolated_settings: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged voice dropped beside the installed one: the worker's main process (which loads nothing) would
    offer it; once its pool process has loaded the voices, the heartbeat offers the installed voice only, and the
    card and `/health` name the damaged one with its reason, while the engine stays up."""
    from backend.services.status.health import service_cards

    damaged_piper_voice(isolated_settings)
    with running_worker("cpu", "piper", monkeypatch):
        piper = wait_for_engine("piper", lambda engine: bool(engine.get("voice_failures")))
        assert [voice["id"] for voice in piper["voices"]] == ["en_US-joe-medium"]
        assert piper["voice_failures"] == {"en_US-damaged-medium": ".onnx model unreadable (InvalidProtobuf)"}
        note = "1 voice not loaded, .onnx model unreadable (InvalidProtobuf): en_US-damaged-medium"
        response = TestClient(build_api()).get("/health")
        assert response.status_code == 200
        assert response.json()["checks"]["engine"]["message"] == f"engines loaded: piper ({note})"
        card = next(card for card in service_cards() if card["name"] == "Engine piper")
        assert card["status"] == "ok" and card["detail"] == f"cpu · 1 voice(s) · {note}"
        damaged_voice_dropped_in_while_running(isolated_settings)
        pool_process_killed_and_replaced(piper["name"])


def damaged_voice_dropped_in_while_running(data_dir: Path) -> None:
    """A damaged voice dropped into the running worker's folder: offered within a beat (its config reads), its
    first job fails saying why, and from then on it is left out and named on the card, like one found at start."""
    from backend.services.jobs.service import enqueue_synthesis
    from tests.conftest import wait_for_job

    damaged_piper_voice(data_dir, "en_US-late-medium")
    wait_for_engine("piper", lambda engine: "en_US-late-medium" in [voice["id"] for voice in engine["voices"]])
    job = enqueue_synthesis("auth0|late", "Nobody hears this.", "en_US-late-medium", "wav")
    status = wait_for_job(job.id, "auth0|late")
    assert (status.status, status.error) == (
        "failed", "the Piper voice 'en_US-late-medium' could not be loaded on this worker: .onnx model unreadable "
                  "(InvalidProtobuf)")
    piper = wait_for_engine("piper", lambda engine: "en_US-late-medium" in engine["voice_failures"])
    assert [voice["id"] for voice in piper["voices"]] == ["en_US-joe-medium"]
    shutil.copy(installed_voice_models()[0], data_dir / "voices" / "piper" / "en_US-late-medium.onnx")  # fixed
    piper = wait_for_engine("piper", lambda engine: "en_US-late-medium" in [v["id"] for v in engine["voices"]])
    assert "en_US-late-medium" not in piper["voice_failures"], "offered again with no job run since it was fixed"
    assert wait_for_job(enqueue_synthesis("auth0|late", "Now it speaks.", "en_US-late-medium", "wav").id,
                        "auth0|late").status == "succeeded"


def pool_process_killed_and_replaced(engine: str) -> None:
    """SIGKILL the live worker's pool process: its replacement's report takes its place (the dead one's is dropped
    at the next beat), and the worker still announces `engine`."""
    import signal

    [worker] = heartbeat.live_workers(get_redis())
    pool_key = heartbeat.POOL_KEY_PREFIX + worker.hostname
    [killed] = get_redis().hkeys(pool_key)
    os.kill(int(killed), signal.SIGKILL)

    def replaced(_workers: list[heartbeat.WorkerInfo]) -> list[str] | None:
        pids = get_redis().hkeys(pool_key)
        return pids if pids and killed not in pids else None

    heartbeats_say(replaced, "its killed pool process's report gone and its replacement's in", timeout_s=30)
    assert wait_for_engine(engine, lambda description: True)


def wait_for_engine(name: str, ready: Callable[[dict], bool]) -> dict:
    """Engine `name` as a live worker announces it, once `ready(description)` holds."""
    def announced(workers: list[heartbeat.WorkerInfo]) -> dict | None:
        return next((e for w in workers for e in w.engines if e["name"] == name and ready(e)), None)

    return heartbeats_say(announced, f"{name} as expected")


def test_a_failure_in_any_pool_process_makes_the_engine_unavailable(embedded_broker) -> None:
    """Two pool processes' reports (as two forked processes write them, here written under two ids): the engine
    one loaded is announced as loaded, the engine one of them failed is unavailable with the reason, and a
    worker's reports last while it beats and go when it withdraws."""
    client = get_redis()
    info = heartbeat.WorkerInfo(hostname="cpu@pool-test", queues=["cpu"],
                                engines=[{"name": "piper", "voices": [{"id": "a"}, {"id": "b"}]}, {"name": "fish"}])
    loaded = {"name": "piper", "voices": [{"id": "a"}], "voice_failures": {"b": "why"}}
    client.hset(heartbeat.POOL_KEY_PREFIX + info.hostname, mapping={
        "101": json.dumps({"engines": [loaded], "failed": {}}),
        "102": json.dumps({"engines": [loaded], "failed": {"fish": "failed to load: OSError: gone"}})})
    announced = (list(info.engines), dict(info.unavailable))
    derived = info.with_pool_reports(heartbeat.pool_reports(client, info.hostname))
    assert derived.engines == [loaded]
    assert derived.unavailable == {"fish": "failed to load: OSError: gone"}
    assert (info.engines, info.unavailable) == announced, "what the main process announced stays the baseline"
    on_disk_now = heartbeat.WorkerInfo(hostname=info.hostname, queues=["cpu"], engines=[
        {"name": "piper", "voices": [{"id": "a"}, {"id": "c"}], "voice_failures": {}}])
    assert on_disk_now.with_pool_reports([{"engines": [loaded], "failed": {}}]).engines == [
        {**loaded, "voices": [{"id": "a"}, {"id": "c"}], "voice_failures": {}}], \
        "a voice added since the pool loaded is offered; the failure of one removed since is no news"
    fixed = heartbeat.WorkerInfo(hostname=info.hostname, queues=["cpu"], engines=[
        {"name": "piper", "voices": [{"id": "a"}, {"id": "b", "revision": "r2"}], "voice_failures": {}}])
    failed_on = {**loaded, "voice_failure_revisions": {"b": "r1"}}
    assert [v["id"] for v in fixed.with_pool_reports([{"engines": [failed_on]}]).engines[0]["voices"]] == ["a", "b"], \
        "b's files were replaced (revision r2) since a pool process failed on them (r1): offered again"
    still = {**failed_on, "voice_failure_revisions": {"b": "r2"}}
    assert [v["id"] for v in fixed.with_pool_reports([{"engines": [still]}]).engines[0]["voices"]] == ["a"]
    heartbeat.report_pool_process(client, info.hostname, [], {})
    assert len(heartbeat.pool_reports(client, info.hostname)) == 3, "this process's own report, under its id"
    heartbeat.publish(client, info)
    assert 0 < client.ttl(heartbeat.POOL_KEY_PREFIX + info.hostname) <= heartbeat.POOL_TTL_S, \
        "kept while the worker beats, gone a day after a worker killed without withdrawing"
    heartbeat.withdraw(client, info.hostname)
    assert heartbeat.pool_reports(client, info.hostname) == []


def test_a_pool_process_killed_without_a_word_no_longer_speaks_for_the_worker(embedded_broker) -> None:
    """A pool process killed by SIGKILL (or the OOM killer) never takes its report back. Its report said the fish
    engine failed; its replacement loaded it. The next beat drops the dead process's report and announces fish as
    loaded: one failure, long gone, does not mark an engine unavailable until the worker restarts."""
    import subprocess
    import sys

    client = get_redis()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id that no longer runs
    info = heartbeat.WorkerInfo(hostname="cpu@killed-pool-test", queues=["cpu"], engines=[{"name": "fish"}])
    fish = {"name": "fish", "voices": [{"id": "fish-default"}], "voice_failures": {}}
    client.hset(heartbeat.POOL_KEY_PREFIX + info.hostname, mapping={
        str(gone.pid): json.dumps({"engines": [], "failed": {"fish": "failed to load: OSError: no memory"}}),
        str(os.getpid()): json.dumps({"engines": [fish], "failed": {}})})
    try:
        heartbeat.HeartbeatThread(client, info).beat()
        [published] = [w for w in heartbeat.live_workers(client) if w.hostname == info.hostname]
        assert published.engines == [fish] and published.unavailable == {}
        assert client.hkeys(heartbeat.POOL_KEY_PREFIX + info.hostname) == [str(os.getpid())]
    finally:
        heartbeat.withdraw(client, info.hostname)
