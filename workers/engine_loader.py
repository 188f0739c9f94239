"""Engines built from settings and loaded once per worker process.

Each engine is built as its registry entry (`backend/queue/engines.py`) says: its class, imported only here,
handed the arguments the entry reads from settings, so an engine can be built the same way in a test, a bench
or a worker, and nothing here names an engine.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import asdict

from backend.core.settings import Settings, get_settings
from backend.media.engine import Engine
from backend.queue.engines import engine_spec
from backend.queue.routing import queue_for

#: Engines loaded in this worker process (by `load_engines`, once per process).
LOADED: dict[str, Engine] = {}
#: A GPU worker's job threads may all ask for their engines at once: one loads, the others wait for it.
_LOADING = threading.Lock()


def engine_class(name: str) -> type[Engine]:
    """The class its registry entry names for engine `name`, imported only now: a CPU worker never imports torch."""
    path = engine_spec(name).engine_class
    module, _, attribute = path.partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise TypeError(f"{path} (the class of engine {name!r}) is not an Engine")
    return cls


def build_engine(name: str, settings: Settings | None = None) -> Engine:
    """An engine named `name`, configured from `settings` as its registry entry says (not loaded yet)."""
    settings = settings or get_settings()
    return engine_class(name)(**engine_spec(name).options(settings))


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


def engine_descriptions(names: list[str]) -> tuple[list[dict], dict[str, str]]:
    """What the heartbeat says about the engines this worker was told to run, without loading models: info and
    voices of each it can run, and why each other one cannot (the status cards show that reason)."""
    described, unavailable = [], {}
    for name in names:
        engine = build_engine(name)
        if (reason := engine.unavailable_reason()) is not None:
            unavailable[name] = reason
            continue
        described.append({**engine.describe().as_dict(), "queue": queue_for(name),
                          "voices": [asdict(v) for v in engine.voices()]})
    return described, unavailable
