"""Engines built from settings and loaded once per worker process.

The only place that reads engine settings: each engine is handed its configuration
when built, so an engine can be built the same way in a test, a bench or a worker.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path

from backend.core.settings import Settings, get_settings
from backend.media.engine import Engine
from backend.media.model_catalog import pulled, qwen_folders
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
        folder = settings.fish_checkpoint_dir or pulled(settings.models_path, "fish")
        return cls(folder, settings.fish_device, settings.fish_max_new_tokens,  # type: ignore[call-arg]
                   settings.fish_compile, settings.data_dir / "torch-compile")
    if name == "qwen3":
        main, clone = qwen_checkpoints(settings)
        return cls(main, clone, settings.qwen_device, settings.qwen_max_new_tokens,  # type: ignore[call-arg]
                   settings.gpu_max_streams)
    return cls(settings.data_dir / "voices" / "piper")  # type: ignore[call-arg]


def qwen_checkpoints(settings: Settings) -> tuple[Path | None, Path | None]:
    """(main, clone) Qwen3-TTS folders: the variables when set (they win), else what `models pull` left."""
    if settings.qwen_checkpoint_dir is not None:
        return settings.qwen_checkpoint_dir, settings.qwen_clone_checkpoint_dir
    main, clone = qwen_folders(settings.models_path)
    return main, settings.qwen_clone_checkpoint_dir or clone


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
