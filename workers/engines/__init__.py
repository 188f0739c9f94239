"""The synthesis engines a worker can load, by name (`LOCKN_ENGINES`)."""

from __future__ import annotations

from workers.engines.base import Engine


def engine_class(name: str) -> type[Engine]:
    """The engine class for `name`; imported lazily so a CPU worker never imports torch."""
    if name == "piper":
        from workers.engines.piper import PiperEngine

        return PiperEngine
    if name == "fish":
        from workers.engines.fish_speech import FishSpeechEngine

        return FishSpeechEngine
    raise ValueError(f"unknown engine {name!r}; LOCKN_ENGINES takes piper and/or fish")


#: Which queue runs which engine, known without importing the engine (the web tier routes by it).
ENGINE_QUEUES = {"piper": "cpu", "fish": "gpu"}
