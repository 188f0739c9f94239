"""`python -m backend.ops.cli models pull|list|remove`: engine weights fetched from the model hub.

NAME is a GPU checkpoint of the catalog (`fish`, `qwen3-custom`, …) or a Piper voice, `piper-<voice id>`
(`piper-en_GB-alan-medium`: any of rhasspy/piper-voices, pinned to its release), which running CPU workers offer
beside the bundled one within a beat. `pull NAME` asks the hub (Hugging Face, or the mirror in `HF_ENDPOINT`;
`HF_TOKEN` for gated models) which files the pinned revision holds, keeps only those the engine loads (`ModelSpec.allow_patterns`), says how much the disk
will hold and refuses when it is short, then downloads with `huggingface_hub.snapshot_download` into a staging
folder. huggingface_hub resumes: a pull that was cut off (Ctrl-C, a dropped connection) continues from the bytes
it already has when run again. Only when every file is there with the size the hub announced and the engine's
layout checks pass is the ready marker written and the folder renamed into place: a half-finished download never
passes for a model (`backend/media/model_catalog.py` says what "pulled" means).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from backend.core.errors import first_line
from backend.core.settings import Settings
from backend.media.model_catalog import (
    CATALOG, PIPER_EXAMPLE, PIPER_PREFIX, PIPER_VOICES_REPO, READY_MARKER, ModelSpec, model_dir, model_spec,
    piper_voice_spec, pulled, pulled_names, read_marker,
)

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
#: Where unfinished downloads wait (with huggingface_hub's resume state) until they are complete.
STAGING = ".staging"
#: Free space kept beyond the download itself (the marker, logs, the filesystem's own needs).
DISK_MARGIN_BYTES = 64 * 2**20
HUB = "https://huggingface.co"
RESUME_CHUNK_BYTES = 2**20


class PullError(Exception):
    """A pull that cannot go on, as one sentence for the operator (nothing half-made is left as a model)."""


@dataclass(frozen=True)
class PullPlan:
    """What the hub says a pull will fetch: the exact commit, and each wanted file with its size."""

    spec: ModelSpec
    commit: str
    files: dict[str, int]

    @property
    def size(self) -> int:
        return sum(self.files.values())


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="pull, list and remove engine weights (Fish Speech, Qwen3-TTS, "
                                                "Piper voices)")
    sub = models.add_subparsers(dest="models_command", required=True)
    pull = sub.add_parser("pull", help="download a model from the hub (HF_ENDPOINT, HF_TOKEN honoured)")
    pull.add_argument("name", metavar="NAME", help=NAMES_HELP)
    sub.add_parser("list", help="the models this machine can pull, and those it holds (size, revision)")
    remove = sub.add_parser("remove", help="delete a pulled model (and any unfinished download of it)")
    remove.add_argument("name", metavar="NAME", help=NAMES_HELP)


#: What NAME may be, as the help and the "unknown model" message say it.
NAMES_HELP = (f"{', '.join(CATALOG)}, or a Piper voice as {PIPER_PREFIX}<voice id> (e.g. {PIPER_EXAMPLE}; "
              f"every voice: {HUB}/{PIPER_VOICES_REPO})")


def run_model_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.models_command == "list":
        print(format_listing(settings.models_path))
        return 0
    spec = model_spec(args.name)
    if spec is None:
        print(f"models {args.models_command}: no model is called {args.name!r}; NAME is {NAMES_HELP}",
              file=sys.stderr)
        return EXIT_USAGE
    if args.models_command == "remove":
        return 0 if remove_model(settings.models_path, args.name) else EXIT_FAILED
    try:
        folder = _interruptible(lambda: pull_model(spec, settings))
    except PullError as exc:
        print(f"models pull {args.name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        # huggingface_hub's download threads would finish their files (gigabytes) before the interpreter exits:
        # leave now. What reached the disk stays in the staging folder for the next pull to resume from.
        print(f"\nmodels pull {args.name}: stopped; run it again to resume where it stopped", file=sys.stderr,
              flush=True)
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)
    print(f"{args.name} is ready in {folder}; {_how_workers_find(spec)}")
    return 0


def _how_workers_find(spec: ModelSpec) -> str:
    """What the operator does next for a pulled model to be spoken with."""
    if spec.engine == "piper":
        return ("running CPU workers offer it within seconds (each loads it before its first job with it); workers "
                "on other machines need it in their own models folder")
    return f"a worker with LOCKN_ENGINES={spec.engine} finds it with no variable set"


# ----- pull ----------------------------------------------------------------------------------------------------


def _interruptible(call):  # type: ignore[no-untyped-def]
    """`call()` in a thread of its own, so Ctrl-C reaches the main thread at once (it waits in short joins)."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as it was raised
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="models-pull", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _hub_errors():  # type: ignore[no-untyped-def]
    """huggingface_hub's error classes, imported when a pull starts (the GPU layer brings the package)."""
    try:
        import requests
        from huggingface_hub import errors
    except ImportError as exc:
        raise PullError("huggingface_hub is not installed: run `make setup` first") from exc
    return requests, errors


def _explain(exc: Exception, spec: ModelSpec, settings: Settings) -> PullError:
    """One sentence for what went wrong talking to the hub; the cause the operator can act on first."""
    requests, errors = _hub_errors()
    endpoint = settings.hf_endpoint or HUB
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, errors.GatedRepoError) or status in (401, 403):
        if settings.hf_token is None:
            return PullError(f"{spec.repo} is gated: accept its terms at {HUB}/{spec.repo}, make a read token at "
                             f"{HUB}/settings/tokens and run again with HF_TOKEN=<token>")
        return PullError(f"the hub at {endpoint} refused the token in HF_TOKEN for {spec.repo} (HTTP {status}): "
                         f"check it can read the repository and that its terms were accepted at {HUB}/{spec.repo}")
    if isinstance(exc, errors.RevisionNotFoundError):
        return PullError(f"{spec.repo} has no revision {spec.revision!r} on {endpoint}")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return PullError(f"{spec.repo} was not found on {endpoint}")
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return PullError("HF_HUB_OFFLINE is set: unset it to download")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, errors.LocalEntryNotFoundError)):
        return PullError(f"cannot reach the model hub at {endpoint} ({type(exc).__name__}): check the network, or "
                         "set HF_ENDPOINT to a mirror; what was downloaded is kept, run again to resume")
    if isinstance(exc, errors.HfHubHTTPError):
        return PullError(f"the hub at {endpoint} answered HTTP {status} for {spec.repo}; run again to resume")
    if isinstance(exc, OSError):
        return PullError(f"the download stopped ({first_line(exc)}); "
                         "run again to resume")
    return PullError(f"{type(exc).__name__}: {exc}")


def _call_hub(spec: ModelSpec, settings: Settings, call):  # type: ignore[no-untyped-def]
    requests, errors = _hub_errors()
    try:
        return call()
    except (requests.RequestException, errors.HfHubHTTPError, errors.OfflineModeIsEnabled,
            errors.LocalEntryNotFoundError, OSError) as exc:
        raise _explain(exc, spec, settings) from None


def plan_pull(spec: ModelSpec, settings: Settings) -> PullPlan:
    """Ask the hub which files the pinned revision holds (with sizes) and keep those the engine loads."""
    _hub_errors()
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    api = HfApi(endpoint=settings.hf_endpoint, token=_token(settings))
    info = _call_hub(spec, settings, lambda: api.model_info(spec.repo, revision=spec.revision, files_metadata=True))
    siblings = list(filter_repo_objects(info.siblings or [], allow_patterns=list(spec.allow_patterns),
                                        key=lambda sibling: sibling.rfilename))
    files = {sibling.rfilename: int(sibling.size or 0) for sibling in siblings}
    escaping = [name for name in files if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts]
    if escaping:  # huggingface_hub joins these to the folder as they are: never let a hub write outside it
        raise PullError(f"the hub at {settings.hf_endpoint or HUB} lists files outside the repository for "
                        f"{spec.repo} ({', '.join(sorted(escaping)[:3])}); refusing to download")
    missing = [name for name in spec.required_files if name not in files]
    if missing and spec.kind == "piper-voice":
        raise PullError(f"{spec.repo} has no voice {spec.name.removeprefix(PIPER_PREFIX)} at {spec.revision} (no "
                        f"{missing[0]}): the voices are listed at {HUB}/{spec.repo}")
    if missing:
        raise PullError(f"{spec.repo}@{spec.revision} lacks {', '.join(missing)}, which the {spec.engine} engine "
                        "needs: the repository's layout changed; pin a revision that has them")
    return PullPlan(spec, str(info.sha), files)


def _token(settings: Settings) -> str | None:
    return settings.hf_token.get_secret_value() if settings.hf_token is not None else None


def _existing(folder: Path) -> Path:
    """`folder`, or its nearest parent that exists (where the filesystem that will hold it is asked)."""
    while not folder.exists():
        folder = folder.parent
    return folder


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(_existing(folder)).free


def _still_needed(plan: PullPlan, staging: Path) -> int:
    """Bytes left to download: files already complete in the staging folder cost nothing more."""
    return sum(size for name, size in plan.files.items()
               if not ((staging / name).is_file() and (staging / name).stat().st_size == size))


def pull_model(spec: ModelSpec, settings: Settings) -> Path:
    """Download `spec` into `LOCKN_MODELS_DIR/<name>` (default `<data dir>/models`), checked and marked ready;
    returns the folder."""
    plan = plan_pull(spec, settings)
    target = model_dir(settings.models_path, spec.name)
    marker = read_marker(target)
    if marker is not None and marker.get("revision") == plan.commit:
        print(f"{spec.name} is already pulled at {plan.commit[:12]} ({human_size(marker.get('size', 0))})")
        return target
    staging = settings.models_path / STAGING / spec.name
    needed, free = _still_needed(plan, staging), _free_bytes(staging)
    print(f"{spec.name}: {spec.repo} @ {plan.commit[:12]}: {len(plan.files)} files, {human_size(plan.size)} on disk "
          f"once pulled; {human_size(needed)} to download into {target} ({human_size(free)} free)", flush=True)
    if needed + DISK_MARGIN_BYTES > free:
        raise PullError(f"the disk is short: {human_size(needed)} to download, {human_size(free)} free at "
                        f"{_existing(staging)}; free some space or set LOCKN_MODELS_DIR to a larger disk")
    staging.mkdir(parents=True, exist_ok=True)
    from huggingface_hub import constants, snapshot_download

    # huggingface_hub writes a download in chunks of this size: a pull cut off mid-file keeps all but the last
    # chunk for the next run to resume from (its default, 10 MB, would lose up to 10 MB of every file in flight).
    constants.DOWNLOAD_CHUNK_SIZE = RESUME_CHUNK_BYTES
    # The hub's HTTP file API (Range requests into the staging folder): how a pull resumes and what the tests
    # check. hf-xet (installed as huggingface_hub's dependency) would fetch through a chunk cache of its own in
    # HF_HOME instead, outside the disk check above.
    constants.HF_HUB_DISABLE_XET = True

    _call_hub(spec, settings, lambda: snapshot_download(
        spec.repo, revision=plan.commit, local_dir=staging, allow_patterns=list(plan.files),
        endpoint=settings.hf_endpoint, token=_token(settings), max_workers=4))
    _check_layout(plan, staging)
    return _mark_ready(plan, staging, target)


def _check_layout(plan: PullPlan, staging: Path) -> None:
    """Every planned file at the size the hub announced, and what the engine reads inside them, before ready."""
    wrong = [name for name, size in plan.files.items()
             if not (staging / name).is_file() or (staging / name).stat().st_size != size]
    if wrong:
        raise PullError(f"{len(wrong)} file(s) did not arrive whole ({', '.join(sorted(wrong)[:3])}); run again to "
                        "resume")
    if plan.spec.kind == "piper-voice":
        _check_piper_config(plan, staging)
    elif plan.spec.kind:
        try:
            kind = json.loads((staging / "config.json").read_text()).get("tts_model_type")
        except ValueError:
            kind = None
        if kind != plan.spec.kind:
            raise PullError(f"{plan.spec.repo}'s config.json says tts_model_type={kind!r}, not {plan.spec.kind!r}: "
                            "not the model this name stands for")


def _check_piper_config(plan: PullPlan, staging: Path) -> None:
    """A Piper voice's `.onnx.json` is JSON with the fields Piper reads (what its voice loader fails on later)."""
    config_name = next(name for name in plan.files if name.endswith(".onnx.json"))
    try:
        config = json.loads((staging / config_name).read_text())
    except (OSError, ValueError):
        config = None
    if not isinstance(config, dict) or not {"num_symbols", "audio", "phoneme_id_map"} <= set(config):
        raise PullError(f"{plan.spec.repo}'s {config_name} is not a Piper voice config (no num_symbols, audio and "
                        "phoneme_id_map): not the voice this name stands for")


def _mark_ready(plan: PullPlan, staging: Path, target: Path) -> Path:
    """Write the marker, then move the folder into place with renames (an old revision is swapped out whole)."""
    shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's resume state: done with it
    record = {"name": plan.spec.name, "engine": plan.spec.engine, "repo": plan.spec.repo, "revision": plan.commit,
              "requested_revision": plan.spec.revision, "files": plan.files, "size": plan.size,
              "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    partial = staging / (READY_MARKER + ".part")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(staging / READY_MARKER)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{int(time.time())}")
        target.replace(old)
    staging.replace(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


# ----- list and remove -------------------------------------------------------------------------------------------


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def listing(root: Path) -> list[dict]:
    """One row per model this machine can pull (pulled: size, revision; partly downloaded; not pulled), then one
    per Piper voice pulled or being pulled (hundreds can be: `NAMES_HELP` says where they are listed)."""
    rows = []
    staged = {folder.name for folder in (root / STAGING).glob(PIPER_PREFIX + "*")}
    piper_voices = sorted(set(pulled_names(root, PIPER_PREFIX)) | staged)
    for spec in [*CATALOG.values(), *filter(None, map(piper_voice_spec, piper_voices))]:
        folder = pulled(root, spec.name)
        marker = read_marker(folder) if folder is not None else None
        staging = root / STAGING / spec.name
        if marker is not None:
            state = "ready"
        elif staging.exists():
            state = "partial (run pull again to resume)"
        else:
            state = "not pulled"
        rows.append({"name": spec.name, "engine": spec.engine, "repo": spec.repo, "state": state,
                     "revision": (marker or {}).get("revision", ""), "size": (marker or {}).get("size", 0),
                     "summary": spec.summary})
    return rows


def format_listing(root: Path) -> str:
    rows = listing(root)
    width = max([18, *(len(row["name"]) for row in rows)])
    lines = [f"{'NAME':<{width}} {'ENGINE':<6} {'STATE':<36} {'SIZE':>9}  {'REVISION':<12}  REPOSITORY"]
    for row in rows:
        size = human_size(row["size"]) if row["state"] == "ready" else ""
        lines.append(f"{row['name']:<{width}} {row['engine']:<6} {row['state']:<36} {size:>9}  "
                     f"{row['revision'][:12]:<12}  {row['repo']}")
    lines.append(f"models live in {root}; pull one with `python -m backend.ops.cli models pull NAME` (NAME: one "
                 f"above, or a Piper voice as {PIPER_PREFIX}<voice id>, e.g. {PIPER_EXAMPLE})")
    return "\n".join(lines)


def remove_model(root: Path, name: str) -> bool:
    """Delete a pulled model and any unfinished download of it; False when there was nothing to delete."""
    found = False
    for folder in (model_dir(root, name), root / STAGING / name):
        if folder.exists():
            trash = folder.with_name(f".{folder.name}.removing-{int(time.time())}")
            folder.replace(trash)  # gone from the engines' view at once, then deleted
            shutil.rmtree(trash, ignore_errors=True)
            found = True
    print(f"{name} removed" if found else f"{name} is not pulled here")
    return found
