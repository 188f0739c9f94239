"""Engines built from settings and loaded once per worker process.

Each engine is built as its registry entry (`backend/queue/engines.py`) says: its class, imported only here,
handed the arguments the entry reads from settings, so an engine can be built the same way in a test, a bench
or a worker, and nothing here names an engine.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import asdict

from backend.core.errors import first_line
from backend.core.settings import Settings, get_settings
from backend.media.engine import Engine
from backend.queue.engines import engine_spec
from backend.queue.routing import queue_for

#: Engines loaded in this worker process (by `load_engines`, once per process).
LOADED: dict[str, Engine] = {}
#: Engines whose load failed in this process → why. Not tried again until the worker restarts: a GPU model's
#: failed load (no memory for it, a damaged checkpoint) costs its whole load time and fails the same way again,
#: and every job would pay for it.
FAILED: dict[str, str] = {}
#: A GPU worker's job threads may all ask for their engines at once: one loads, the others wait for it.
_LOADING = threading.Lock()
logger = logging.getLogger(__name__)


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
    """Build and load each named engine once; engines that cannot run here are skipped with a reason, and one
    whose load fails is logged (with its traceback), kept in `FAILED` with the reason and skipped: the others
    still load, and its jobs fail at once ("the … engine failed to start on this worker")."""
    wanted = names if names is not None else get_settings().engine_names
    if all(name in LOADED or name in FAILED for name in wanted):
        return LOADED
    with _LOADING:
        for name in wanted:
            if name in LOADED or name in FAILED:
                continue
            engine = build_engine(name)
            if (reason := engine.unavailable_reason()) is not None:
                print(f"LockN worker: engine {name} not loaded: {reason}", flush=True)
                continue
            try:
                engine.load()
            except Exception as exc:  # noqa: BLE001 - any failure of one engine's load leaves the others running
                FAILED[name] = f"failed to load: {first_line(exc, with_type=True)}"
                logger.exception("engine %s failed to load", name)
                continue
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
        described.append(describe_engine(name, engine))
    return described, unavailable


def voice_sources(names: list[str]) -> tuple:
    """What the named engines' voices are read from (`Engine.voice_sources`: stats of their files), as one value
    that changes when a voice is pulled, dropped in, replaced or removed."""
    return tuple(build_engine(name).voice_sources() for name in names)


def refresh_loaded_engines() -> bool:
    """Each engine loaded in this process takes in its voices added, replaced or removed (`Engine.refresh`); True
    when any changed what it speaks. A voice that fails to load is kept in its engine's `voice_failures`."""
    changed = False
    for name, engine in list(LOADED.items()):
        try:
            changed = engine.refresh() or changed
        except Exception:  # noqa: BLE001 - a voice folder that cannot be read leaves the engine as it was
            logger.exception("engine %s could not read its voices again", name)
    return changed


def describe_engine(name: str, engine: Engine) -> dict:
    """What a heartbeat says of one engine: its `EngineInfo`, its queue and its voices."""
    return {**engine.describe().as_dict(), "queue": queue_for(name), "voices": [asdict(v) for v in engine.voices()]}


def warm_up_engine(name: str) -> str | None:
    """Speak engine `name`'s warm-up sentence (`Engine.warm_up`). None when it spoke; otherwise why it cannot
    speak: it failed to load, or it failed its first sentence (then it is dropped from `LOADED` and kept in
    `FAILED`: its jobs fail at once instead of on a broken engine, the traceback is in the log)."""
    if name not in LOADED:
        return FAILED.get(name, f"the {name} engine is not loaded")
    try:
        LOADED[name].warm_up()
    except Exception as exc:  # noqa: BLE001 - an engine that cannot speak is reported, never left warming up
        logger.exception("engine %s failed its warm-up sentence", name)
        FAILED[name] = f"failed its first sentence: {first_line(exc, with_type=True)}"
        del LOADED[name]
        return FAILED[name]
    return None
