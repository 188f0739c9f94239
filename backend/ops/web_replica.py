"""One web replica: Reflex's production backend (pages' websocket, API, login) on one port.

`reflex run --env prod` compiles and builds the frontend every time it starts;
several replicas sharing one checkout would rebuild it under each other. Here the
frontend is built once (`build_frontend`), and each replica only serves: Reflex's
own production server (Granian) with the built frontend mounted, or without it
when a proxy or CDN serves the static files. Run it as
`python -m backend.ops.cli web --port 3001`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from backend.core.settings import PROJECT_ROOT, Settings

TOOLS_DIR = PROJECT_ROOT / ".tools"
#: Where Reflex's production build puts the static frontend.
FRONTEND_BUILD = PROJECT_ROOT / ".web" / "build" / "client"
#: The fingerprint of what the last build was made from (see `frontend_fingerprint`).
BUILD_FINGERPRINT = PROJECT_ROOT / ".web" / "lockn-build.sha256"
#: What the compiled pages are made of: the page, state and component code (state classes compile into the
#: JavaScript), the code they import, static assets and Reflex's own configuration and lock file.
FRONTEND_INPUTS = ("lockn_app", "state", "components", "backend", "assets", "rxconfig.py", "reflex.lock",
                   "requirements.txt")


def reflex_environment(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Reflex needs to build offline: our own bun, no telemetry, no probing of mirrors."""
    env = dict(os.environ if base is None else base)
    bun_bin = TOOLS_DIR / "node_modules" / ".bin"
    env["PATH"] = f"{bun_bin}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({
        "REFLEX_USE_SYSTEM_BUN": "1",
        "REFLEX_DIR": str(TOOLS_DIR / "reflex"),
        "BUN_INSTALL_CACHE_DIR": str(TOOLS_DIR / "bun-cache"),
        "REFLEX_TELEMETRY_ENABLED": "false",
        "REFLEX_CHECK_LATEST_VERSION": "false",
        "LOCKN_PORT": str(settings.port),
    })
    env.setdefault("NPM_CONFIG_REGISTRY", _npm_registry())
    return env


def _npm_registry() -> str:
    """The registry npm is configured for, so Reflex does not probe others for the fastest."""
    npm = shutil.which("npm")
    if npm:
        result = subprocess.run([npm, "config", "get", "registry"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip().startswith("http"):
            return result.stdout.strip()
    return "https://registry.npmjs.org/"


def frontend_built() -> bool:
    return (FRONTEND_BUILD / "index.html").exists()


def frontend_fingerprint(settings: Settings) -> str:
    """A hash of every input of the frontend build, and of the address baked into it (Reflex writes the
    backend's URL into the build): equal fingerprints mean the existing build is the one a new build would make."""
    digest = hashlib.sha256(f"{settings.base_url}\n{settings.env}\n{sys.version}\n".encode())
    for name in FRONTEND_INPUTS:
        root = PROJECT_ROOT / name
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()
                                                     and "__pycache__" not in p.parts)
        for path in files:
            digest.update(f"{path.relative_to(PROJECT_ROOT)}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_frontend_if_changed(settings: Settings) -> bool:
    """Build the frontend unless the last build came from these very inputs; True when it built.

    Building takes most of a cold start (about half a minute on two cores); a second `make run`, or a web
    process restarted by the supervisor, serves the existing build in seconds."""
    fingerprint = frontend_fingerprint(settings)
    if frontend_built() and BUILD_FINGERPRINT.is_file() and BUILD_FINGERPRINT.read_text() == fingerprint:
        return False
    BUILD_FINGERPRINT.unlink(missing_ok=True)
    print("LockN: building the pages (first start, or their code changed)…", flush=True)
    build_frontend(settings)
    BUILD_FINGERPRINT.write_text(fingerprint)
    return True


def build_frontend(settings: Settings) -> None:
    """Compile the pages and build the static frontend once, for every replica to serve."""
    command = [sys.executable, "-m", "reflex", "export", "--frontend-only", "--no-zip", "--env", "prod",
               "--loglevel", "warning"]
    subprocess.run(command, cwd=PROJECT_ROOT, env=reflex_environment(settings), check=True)


def web_command(port: int, with_frontend: bool = True) -> list[str]:
    command = [sys.executable, "-m", "backend.ops.cli", "web", "--port", str(port)]
    return command if with_frontend else [*command, "--no-frontend"]


def serve(settings: Settings, port: int, with_frontend: bool = True) -> None:
    """Run the replica in the foreground (Granian, with Reflex's production settings) until stopped."""
    from reflex_base import constants
    from reflex_base.environment import environment

    if with_frontend and not frontend_built():
        raise SystemExit(f"no frontend build at {FRONTEND_BUILD}: run `python -m backend.ops.cli build` first "
                         "(or pass --no-frontend when a proxy serves the static files)")
    os.chdir(PROJECT_ROOT)
    environment.REFLEX_ENV_MODE.set(constants.Env.PROD)
    environment.REFLEX_SKIP_COMPILE.set(True)
    from reflex.utils import exec as reflex_exec

    reflex_exec.run_backend_prod(settings.host, port, constants.LogLevel.WARNING,
                                 mount_frontend_compiled_app=with_frontend)


def replica_workers(default: int = 2) -> str:
    """Granian processes per replica: Reflex's default (2×cores+1) starves a small machine running several."""
    return os.environ.get("GRANIAN_WORKERS", str(default))

