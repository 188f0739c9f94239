"""The engine registry: everything web and workers need to know about an engine, in one entry per engine.

An entry names the engine's class (as an import path, so the web tier routes and lists engines without
importing one: a CPU web replica never imports torch), the queue its jobs wait in, how the worker's settings
become the class's arguments, and the OpenAI model id that asks for it. The worker's loader
(`workers/engine_loader.py`), routing (`backend/queue/routing.py`), the OpenAI model list
(`backend/services/voices/openai_compat.py`) and the voice library read it; adding an engine is one entry here
and its module under `workers/engines/` (and its settings fields, if it has any).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backend.core.settings import Settings


@dataclass(frozen=True)
class EngineSpec:
    """One engine as the whole platform knows it."""

    #: The engine's name: `LOCKN_ENGINES`, `Job.engine`, the heartbeat and built-in voice ids (`fish-default`).
    name: str
    #: "module:Class" of its `backend.media.engine.Engine`, imported by the worker's loader only.
    engine_class: str
    #: The queue its jobs wait in: `gpu` machines consume `gpu`, every machine can consume `cpu`.
    queue: str
    #: The class's keyword arguments from a worker's settings (an engine reads no settings itself).
    options: Callable[[Settings], dict[str, Any]]
    #: The OpenAI model id (`/v1/models`, `model` of `/v1/audio/speech`) that asks for this engine.
    openai_model: str
    #: What `/v1/audio/models` says about that model.
    summary: str
    #: Whether it can speak cloned voices (given the right weights); the first such engine records new clones.
    clones: bool = False


def _piper_options(settings: Settings) -> dict[str, Any]:
    return {"voice_dir": settings.data_dir / "voices" / "piper", "models_dir": settings.models_path}


def _fish_options(settings: Settings) -> dict[str, Any]:
    return {"checkpoint_dir": settings.fish_checkpoint_dir, "models_dir": settings.models_path,
            "device": settings.fish_device, "max_new_tokens": settings.fish_max_new_tokens,
            "step": settings.gpu_step, "compile_cache_dir": settings.data_dir / "torch-compile",
            "max_streams": settings.gpu_max_streams}


def _qwen3_options(settings: Settings) -> dict[str, Any]:
    return {"checkpoint_dir": settings.qwen_checkpoint_dir, "clone_checkpoint_dir": settings.qwen_clone_checkpoint_dir,
            "models_dir": settings.models_path, "device": settings.qwen_device,
            "max_new_tokens": settings.qwen_max_new_tokens, "max_streams": settings.gpu_max_streams,
            "step": settings.gpu_step, "compile_cache_dir": settings.data_dir / "torch-compile"}


#: Every engine, by name, in the order lists show them.
ENGINES: dict[str, EngineSpec] = {spec.name: spec for spec in (
    EngineSpec("piper", "workers.engines.piper:PiperEngine", "cpu", _piper_options, "piper", "Piper, CPU"),
    EngineSpec("fish", "workers.engines.fish_speech:FishSpeechEngine", "gpu", _fish_options, "fish-speech",
               "Fish Speech, GPU, zero-shot cloning", clones=True),
    EngineSpec("qwen3", "workers.engines.qwen3:Qwen3Engine", "gpu", _qwen3_options, "qwen3-tts",
               "Qwen3-TTS, GPU: preset speakers that follow `instructions`, zero-shot cloning", clones=True),
)}


def engine_spec(name: str) -> EngineSpec:
    """The entry of engine `name`; an unknown name is a configuration error that lists the known ones."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; LOCKN_ENGINES takes {', '.join(ENGINES)}") from None
