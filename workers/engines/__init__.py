"""The synthesis engines a worker can load, by name (`LOCKN_ENGINES`).

Engines implement `backend.media.engine.Engine` and import nothing else from `backend/`:
`workers/engine_loader.py` builds them with their configuration.
"""

from __future__ import annotations

from backend.media.engine import Engine

ENGINE_NAMES = ("piper", "fish", "qwen3")


def engine_class(name: str) -> type[Engine]:
    """The engine class for `name`; imported lazily so a CPU worker never imports torch."""
    if name == "piper":
        from workers.engines.piper import PiperEngine

        return PiperEngine
    if name == "fish":
        from workers.engines.fish_speech import FishSpeechEngine

        return FishSpeechEngine
    if name == "qwen3":
        from workers.engines.qwen3 import Qwen3Engine

        return Qwen3Engine
    raise ValueError(f"unknown engine {name!r}; LOCKN_ENGINES takes {' and/or '.join(ENGINE_NAMES)}")
