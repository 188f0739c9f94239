"""Engine weights from the model hub: which repository each pullable model comes from, and where a pulled one lies.

The GPU engines' checkpoints are named in `CATALOG`; Piper voices are named by their voice id
(`piper-en_GB-alan-medium`: `piper_voice_spec`), one of the hundreds in rhasspy/piper-voices.

Shared by the `models` commands (`backend/ops/models.py` downloads), the engines (handed the models folder, they
find pulled folders when no `LOCKN_*_CHECKPOINT_DIR` is set; their "no weights" reason names the command that
fixes it) and the status cards. It imports nothing from the rest of `backend/`: callers hand it the
models folder (`LOCKN_MODELS_DIR`, default `<data dir>/models`), so an engine can read it without settings.

A pulled model is the folder `<models folder>/<name>/` holding `READY_MARKER`, a JSON record of the revision and
files. Downloads go to `<models folder>/.staging/<name>/` and the folder is renamed into place only once every
file is there with its size and the engine's layout checks pass: a folder without the marker is never a model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

#: Written last into a finished download; its presence is what "pulled" means.
READY_MARKER = "lockn-model.json"
#: The command that pulls a model, as the user types it.
PULL_COMMAND = "python -m backend.ops.cli models pull"


@dataclass(frozen=True)
class ModelSpec:
    """One pullable model: the repository and revision it is pinned to, what to fetch, what the engine needs."""

    name: str
    engine: str
    repo: str
    #: A commit id pins the exact weights; "main" follows the repository (see README, "Models").
    revision: str
    #: Only the files the engine loads (glob patterns over repository paths; `*` crosses `/`).
    allow_patterns: tuple[str, ...]
    #: Files the engine refuses to load without (checked after the download, before the model is marked ready).
    required_files: tuple[str, ...]
    #: For Qwen3-TTS: the `tts_model_type` its config.json must name ("custom_voice" or "base").
    kind: str = ""
    summary: str = ""


#: What every Qwen3-TTS 12 Hz folder holds (the text tokenizer's files vary by how it was saved); the engine checks it.
QWEN_REQUIRED_FILES = ("config.json", "model.safetensors", "generation_config.json", "speech_tokenizer/config.json")
#: What a Fish Speech (OpenAudio S1) folder holds; the engine checks it (`codec_config.yaml` is optional).
FISH_REQUIRED_FILES = ("config.json", "model.pth", "tokenizer.tiktoken", "codec.pth")

_QWEN_FILES = ("*.json", "*.safetensors", "merges.txt", "vocab.txt", "*.tiktoken", "tokenizer.model")
_QWEN_REQUIRED = (*QWEN_REQUIRED_FILES, "speech_tokenizer/model.safetensors")

#: Every model `models pull` knows, by the name the user types. The first of an engine's names is the one its
#: "no weights" message suggests.
CATALOG: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("fish", "fish", "fishaudio/openaudio-s1-mini", "main",
              ("config.json", "model.pth", "tokenizer.tiktoken", "special_tokens.json", "codec.pth",
               "codec_config.yaml"),
              (*FISH_REQUIRED_FILES, "special_tokens.json"),
              summary="Fish Speech / OpenAudio S1-mini: zero-shot cloning (gated: accept its terms, set HF_TOKEN)"),
    ModelSpec("qwen3-custom", "qwen3", "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice", "main", _QWEN_FILES, _QWEN_REQUIRED,
              "custom_voice", "Qwen3-TTS 1.7B CustomVoice: nine preset speakers that follow instructions"),
    ModelSpec("qwen3-base", "qwen3", "Qwen/Qwen3-TTS-12Hz-1.7B-Base", "main", _QWEN_FILES, _QWEN_REQUIRED,
              "base", "Qwen3-TTS 1.7B Base: cloned voices"),
    ModelSpec("qwen3-custom-0.6b", "qwen3", "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice", "main", _QWEN_FILES,
              _QWEN_REQUIRED, "custom_voice",
              "Qwen3-TTS 0.6B CustomVoice: the preset speakers, smaller (no instructions)"),
    ModelSpec("qwen3-base-0.6b", "qwen3", "Qwen/Qwen3-TTS-12Hz-0.6B-Base", "main", _QWEN_FILES, _QWEN_REQUIRED,
              "base", "Qwen3-TTS 0.6B Base: cloned voices, smaller"),
)}


def model_dir(root: Path, name: str) -> Path:
    """Where the model `name` lies once pulled (whether or not it is there), under the models folder `root`."""
    return Path(root) / name


def read_marker(folder: Path) -> dict | None:
    """The ready record of a pulled model folder, or None when the folder is not a finished pull."""
    try:
        return json.loads((folder / READY_MARKER).read_text())
    except (OSError, ValueError):
        return None


def pulled(root: Path, name: str) -> Path | None:
    """The folder of model `name` when it was pulled completely, else None."""
    folder = model_dir(root, name)
    return folder if read_marker(folder) is not None else None


def first_pulled(root: Path, names: tuple[str, ...]) -> Path | None:
    """The first of `names` (in order of preference) that is pulled."""
    return next((folder for name in names if (folder := pulled(root, name)) is not None), None)


def qwen_folders(root: Path) -> tuple[Path | None, Path | None]:
    """(main, clone) checkpoint folders for Qwen3-TTS from what was pulled: a CustomVoice model (the larger
    first) for preset speakers with a Base one beside it for cloning, or a Base model alone."""
    custom = first_pulled(root, ("qwen3-custom", "qwen3-custom-0.6b"))
    base = first_pulled(root, ("qwen3-base", "qwen3-base-0.6b"))
    return (custom, base) if custom is not None else (base, None)


def qwen_checkpoints(main: Path | None, clone: Path | None, root: Path) -> tuple[Path | None, Path | None]:
    """(main, clone) Qwen3-TTS folders: those set (`LOCKN_QWEN_CHECKPOINT_DIR`, `…_CLONE_…`) win, the rest come
    from what `models pull` left under the models folder `root`; a main folder set takes no pulled clone."""
    if main is not None:
        return main, clone
    pulled_main, pulled_clone = qwen_folders(root)
    return pulled_main, clone or pulled_clone


def no_weights_reason(engine: str, variable: str) -> str:
    """Why an engine without any checkpoint cannot run, with the exact command that fixes it."""
    suggested = next(spec.name for spec in CATALOG.values() if spec.engine == engine)
    return f"no weights: run `{PULL_COMMAND} {suggested}` (or set {variable})"


#: Where Piper's voices are published (rhasspy/piper-voices), pinned to its release tag.
PIPER_VOICES_REPO = "rhasspy/piper-voices"
PIPER_VOICES_REVISION = "v1.0.0"
#: A pulled Piper voice's name: this prefix and the voice's id, e.g. `piper-en_GB-alan-medium`.
PIPER_PREFIX = "piper-"
#: A Piper voice id: language_REGION-dataset-quality (`en_GB-alan-medium`, `en_US-libritts_r-medium`).
_PIPER_VOICE_ID = re.compile(r"^(?P<family>[a-z]{2,3})_(?P<region>[A-Z]{2})-(?P<dataset>[a-z0-9_]+)"
                             r"-(?P<quality>x_low|low|medium|high)$")
PIPER_EXAMPLE = f"{PIPER_PREFIX}en_GB-alan-medium"


def piper_voice_spec(name: str) -> ModelSpec | None:
    """The pull of Piper voice `name` (`piper-<voice id>`): its model and config from the voices repository; None
    when `name` is not of that shape."""
    voice = name.removeprefix(PIPER_PREFIX)
    match = _PIPER_VOICE_ID.match(voice) if name.startswith(PIPER_PREFIX) else None
    if match is None:
        return None
    folder = f"{match['family']}/{match['family']}_{match['region']}/{match['dataset']}/{match['quality']}"
    files = (f"{folder}/{voice}.onnx", f"{folder}/{voice}.onnx.json")
    return ModelSpec(name, "piper", PIPER_VOICES_REPO, PIPER_VOICES_REVISION, files, files, kind="piper-voice",
                     summary=f"Piper voice {voice} (CPU)")


def model_spec(name: str) -> ModelSpec | None:
    """The pullable model called `name`: a GPU checkpoint of `CATALOG` or a Piper voice; None for neither."""
    return CATALOG.get(name) or piper_voice_spec(name)


def pulled_names(root: Path, prefix: str) -> list[str]:
    """Names of the models under the models folder `root` whose name starts with `prefix` and that were pulled
    completely (a download in progress is not one)."""
    if not Path(root).is_dir():
        return []
    return sorted(folder.name for folder in Path(root).glob(prefix + "*") if read_marker(folder) is not None)


def pulled_piper_voices(root: Path) -> list[Path]:
    """The `.onnx` model of every Piper voice pulled under the models folder `root`."""
    return [model for name in pulled_names(root, PIPER_PREFIX) for model in sorted((Path(root) / name).rglob("*.onnx"))]
