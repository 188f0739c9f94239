"""Whether a voice can be spoken now, from the heartbeats: ready, warming up, or down with the reason."""

from __future__ import annotations

from backend.queue.heartbeat import WorkerInfo
from backend.services.status.readiness import speech_readiness, voice_readiness

JOE = "en_US-joe-medium"
PIPER = {"name": "piper", "device": "cpu", "voices": [{"id": JOE, "name": "Joe"}]}
FISH = {"name": "fish", "device": "cuda", "supports_cloning": True, "voices": [{"id": "fish-default", "name": "F"}]}


def test_a_served_voice_is_ready_and_says_by_what() -> None:
    readiness = voice_readiness(JOE, [WorkerInfo("cpu@box", ["cpu"], engines=[PIPER])])
    assert readiness.status == "ready" and readiness.reason == "spoken by piper on cpu"


def test_no_worker_says_so_for_the_voice_and_for_speech() -> None:
    assert voice_readiness(JOE, []).as_dict() == {
        "status": "down", "reason": "no worker is running: start one with `make run` or `make worker`"}
    assert speech_readiness([]).status == "down"
    assert voice_readiness("", []).reason.startswith("no voice to speak with: no worker is running")


def test_a_voice_of_another_engine_is_down_while_a_worker_runs() -> None:
    readiness = voice_readiness("fish-default", [WorkerInfo("cpu@box", ["cpu"], engines=[PIPER])])
    assert readiness.status == "down" and readiness.reason == "no live worker serves it"
    told = WorkerInfo("gpu@box", ["gpu"], unavailable={"fish": "no weights: run `models pull fish`"})
    readiness = voice_readiness("fish-default", [told])
    assert readiness.status == "down" and "no weights: run `models pull fish`" in readiness.reason


def test_warming_engines_are_warming_until_one_is_ready() -> None:
    cold = WorkerInfo("gpu@a", ["gpu"], engines=[{**FISH, "warming": True}])
    assert voice_readiness("fish-default", [cold]).status == "warming"
    assert voice_readiness("voice_abc", [cold]).status == "warming"  # a clone waits for the cloning engine
    warm = WorkerInfo("gpu@b", ["gpu"], engines=[FISH])
    assert voice_readiness("fish-default", [cold, warm]).status == "ready"
    assert speech_readiness([cold]).status == "warming" and speech_readiness([cold, warm]).status == "ready"


def test_a_clone_needs_a_cloning_engine() -> None:
    readiness = voice_readiness("voice_abc", [WorkerInfo("cpu@box", ["cpu"], engines=[PIPER])])
    assert readiness.status == "down" and "needs a cloning engine" in readiness.reason


def test_a_webhook_worker_is_no_speech_worker() -> None:
    """`make run` also starts a webhook worker (no engines): with only it alive, no worker is running speech."""
    webhooks = WorkerInfo("webhooks@box", ["webhooks"])
    assert voice_readiness(JOE, [webhooks]).reason.startswith("no worker is running")
    assert speech_readiness([webhooks]).reason.startswith("no worker is running")
