"""One web replica: Reflex's production backend (pages' websocket, API, login) on one port.

`reflex run --env prod` compiles and builds the frontend every time it starts;
several replicas sharing one checkout would rebuild it under each other. Here the
frontend is built once (`build_frontend`), and each replica only serves: Reflex's
own production server (Granian) with the built frontend mounted, or without it
when a proxy or CDN serves the static files. Run it as
`python -m backend.cli web --port 3001`.
"""

from __future__ import annotations

import os
import subprocess
import sys

from backend.settings import PROJECT_ROOT, Settings

#: Where Reflex's production build puts the static frontend.
FRONTEND_BUILD = PROJECT_ROOT / ".web" / "build" / "client"


def frontend_built() -> bool:
    return (FRONTEND_BUILD / "index.html").exists()


def build_frontend(settings: Settings) -> None:
    """Compile the pages and build the static frontend once, for every replica to serve."""
    from backend.cli import reflex_environment

    command = [sys.executable, "-m", "reflex", "export", "--frontend-only", "--no-zip", "--env", "prod",
               "--loglevel", "warning"]
    subprocess.run(command, cwd=PROJECT_ROOT, env=reflex_environment(settings), check=True)


def web_command(port: int, with_frontend: bool = True) -> list[str]:
    command = [sys.executable, "-m", "backend.cli", "web", "--port", str(port)]
    return command if with_frontend else [*command, "--no-frontend"]


def serve(settings: Settings, port: int, with_frontend: bool = True) -> None:
    """Run the replica in the foreground (Granian, with Reflex's production settings) until stopped."""
    from reflex_base import constants
    from reflex_base.environment import environment

    if with_frontend and not frontend_built():
        raise SystemExit(f"no frontend build at {FRONTEND_BUILD}: run `python -m backend.cli build` first "
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

