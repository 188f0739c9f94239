"""Engines built from settings and loaded once per worker process.

The only place that reads engine settings: each engine is handed its configuration
when built, so an engine can be built the same way in a test, a bench or a worker.
"""

from __future__ import annotations

import threading
from dataclasses import asdict

from backend.core.settings import Settings, get_settings
from backend.media.engine import Engine
from backend.queue.routing import queue_for
from workers.engines import engine_class

#: Engines loaded in this worker process (by `load_engines`, once per process).
LOADED: dict[str, Engine] = {}
#: A GPU worker's job threads may all ask for their engines at once: one loads, the others wait for it.
_LOADING = threading.Lock()


def build_engine(name: str, settings: Settings | None = None) -> Engine:
    """An engine named `name`, configured from `settings` (not loaded yet)."""
    settings = settings or get_settings()
    cls = engine_class(name)
    if name == "fish":
        return cls(settings.fish_checkpoint_dir, settings.fish_device, settings.fish_max_new_tokens,  # type: ignore[call-arg]
                   settings.fish_compile, settings.data_dir / "torch-compile")
    if name == "qwen3":
        return cls(settings.qwen_checkpoint_dir, settings.qwen_clone_checkpoint_dir, settings.qwen_device,  # type: ignore[call-arg]
                   settings.qwen_max_new_tokens, settings.gpu_max_streams)
    return cls(settings.data_dir / "voices" / "piper")  # type: ignore[call-arg]


def load_engines(names: list[str] | None = None) -> dict[str, Engine]:
    """Build and load each named engine once; engines that cannot run here are skipped with a reason."""
    wanted = names if names is not None else get_settings().engine_names
    if all(name in LOADED for name in wanted):
        return LOADED
    with _LOADING:
        for name in wanted:
            if name in LOADED:
                continue
            engine = build_engine(name)
            if (reason := engine.unavailable_reason()) is not None:
                print(f"LockN worker: engine {name} not loaded: {reason}", flush=True)
                continue
            engine.load()
            LOADED[name] = engine
    return LOADED


def engine_descriptions(names: list[str]) -> list[dict]:
    """What the heartbeat says about each engine this worker can run: info and voices, without loading models."""
    described = []
    for name in names:
        engine = build_engine(name)
        if engine.unavailable_reason() is None:
            described.append({**engine.describe().as_dict(), "queue": queue_for(name),
                              "voices": [asdict(v) for v in engine.voices()]})
    return described
