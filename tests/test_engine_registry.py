"""The engine registry is the one place an engine is named: every entry builds, routes and is listed."""

from __future__ import annotations

import pytest

from backend.queue.engines import ENGINES
from backend.queue.routing import job_queues, queue_for
from backend.services.voices import openai_compat
from workers.engine_loader import build_engine, engine_class


@pytest.mark.parametrize("name", list(ENGINES))
def test_each_entry_builds_its_engine_from_settings(name: str) -> None:
    """The class path imports an Engine of that name (no model loaded), and the settings the entry hands it are
    the arguments its constructor takes."""
    assert engine_class(name).name == name
    assert build_engine(name).name == name


@pytest.mark.parametrize("name", list(ENGINES))
def test_each_entry_is_routed_and_listed(name: str) -> None:
    spec = ENGINES[name]
    assert queue_for(name) == spec.queue and spec.queue in job_queues()
    assert openai_compat.MODEL_ENGINES[spec.openai_model] == name
    assert openai_compat.MODELS[spec.openai_model] == spec.summary


def test_an_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown engine 'espeak'; LOCKN_ENGINES takes piper, fish, qwen3"):
        build_engine("espeak")
