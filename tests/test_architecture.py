"""The house has one-way stairs: these tests read every import (lazy ones too) and fail on a wrong arrow.

The rules are those of `../shared/ARCHITECTURE.md` ("The shape"):
- nothing in `backend/` imports `workers/` (what web and workers share lives in `backend/`);
- an engine (`workers/engines/`) imports nothing from `backend/` but the engine contract and media helpers;
- the doors (`state/`, `backend/api/`) reach the database only through services, never with a session of their own;
- the doors import no database model and no media module: what they show or check comes from a service;
- the rooms of `backend/` are layered: the core imports no other room, media and the queue only the core, …;
- no two top-level packages, and no two rooms of `backend/`, import each other (directly or round a circle);
- only entry points import `backend/ops` (the operations tools are run, never imported by the product);
- nothing a worker runs reaches the web tier's admission or enqueue rules (a finished job's side effects, a batch's
  next line included, go through the job lifecycle and the queue).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The project's own top-level packages and modules (tests, qa and bench sit above all of them).
PACKAGES = ("backend", "workers", "state", "components", "lockn_app", "rxconfig")
#: What each room of `backend/` may import from the others (itself always allowed). Order is the layering.
BACKEND_ROOMS: dict[str, set[str]] = {
    "core": set(),
    "migrations": {"core"},
    "media": {"core"},
    "queue": {"core"},
    "services": {"core", "media", "queue"},
    "auth": {"core", "services"},
    "api": {"core", "services", "auth"},
    "ops": {"core", "media", "queue", "services", "api", "auth"},
}
#: The modules a worker process runs: the Celery door, its sweeps and engines, and the job runner and lifecycle.
WORKER_SIDE = ("workers", "backend.services.jobs.runner", "backend.services.jobs.lifecycle")
#: The web tier's rules for letting a request in: admission control and `enqueue_synthesis`.
WEB_ADMISSION = ("backend.services.jobs.admission", "backend.services.jobs.service")
#: Modules whose session or engine a door must not use itself.
DATABASE_MODULES = ("sqlmodel", "sqlalchemy.orm", "backend.core.db")
#: Modules behind the services a door must not import: the rows (a service hands them out) and the media room
#: (formats, limits and captions reach a door through the service that applies them).
SERVICE_ONLY_MODULES = ("backend.core.models", "backend.media")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> Iterator[Path]:
    for package in PACKAGES:
        target = ROOT / package
        yield from sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, as absolute dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                package = module_name(path).split(".")
                package = package[: len(package) - node.level + (1 if path.name == "__init__.py" else 0)]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


GRAPH: dict[str, set[str]] = {module_name(path): imports_of(path) for path in source_files()}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def arrows(source: str, target: str) -> list[str]:
    """`module -> import` pairs from modules under `source` to modules under `target`."""
    return sorted(f"{module} -> {imported}" for module, imported_names in GRAPH.items() if within(module, source)
                  for imported in imported_names if within(imported, target))


def room(module: str) -> str | None:
    """The room of `backend/` a module lives in (`backend.services.keys.service` → `services`)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "backend" and len(parts) > 1 and parts[1] in BACKEND_ROOMS else None


def package(module: str) -> str | None:
    """The project's top-level package a module lives in; None for third-party modules."""
    first = module.split(".")[0]
    return first if first in PACKAGES else None


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle in the graph, as the list of nodes round it, or None."""
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        state[node] = 2
        trail.pop()
        return None

    for node in sorted(edges):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def test_the_graph_is_read() -> None:
    """A guard for the guards: the walk finds the files and the lazy imports inside functions."""
    assert "backend.services.jobs.service" in GRAPH and "workers.tasks" in GRAPH and "state.studio" in GRAPH
    assert "backend.ops.rehearsal" in GRAPH["backend.ops.cli"], "a lazy import inside a function is seen"


def test_backend_never_imports_workers() -> None:
    assert arrows("backend", "workers") == []


def test_engines_import_only_the_engine_contract_from_backend() -> None:
    wrong = [arrow for arrow in arrows("workers.engines", "backend") if not arrow.split(" -> ")[1].startswith(
        "backend.media")]
    assert wrong == []


@pytest.mark.parametrize("door", ["state", "backend.api"])
def test_doors_reach_the_database_only_through_services(door: str) -> None:
    assert [arrow for target in DATABASE_MODULES for arrow in arrows(door, target)] == []


@pytest.mark.parametrize("door", ["state", "backend.api", "lockn_app", "components"])
def test_doors_reach_models_and_media_only_through_services(door: str) -> None:
    assert [arrow for target in SERVICE_ONLY_MODULES for arrow in arrows(door, target)] == []


def test_backend_rooms_are_layered() -> None:
    wrong = []
    for module, imported_names in GRAPH.items():
        source = room(module)
        for imported in imported_names:
            target = room(imported)
            if source and target and target != source and target not in BACKEND_ROOMS[source]:
                wrong.append(f"{module} ({source}) -> {imported} ({target})")
    assert sorted(set(wrong)) == []


@pytest.mark.parametrize("level", ["top-level package", "room of backend"])
def test_no_circles(level: str) -> None:
    name = package if level == "top-level package" else room
    edges: dict[str, set[str]] = {}
    for module, imported_names in GRAPH.items():
        for imported in imported_names:
            source, target = name(module), name(imported)
            if source and target and source != target:
                edges.setdefault(source, set()).add(target)
    assert find_cycle(edges) is None


def test_no_circles_between_modules() -> None:
    """Module by module (lazy imports included): a circle hidden behind a function-level import is still one."""
    modules = set(GRAPH)
    edges = {}
    for module, names in GRAPH.items():
        targets = {imported for imported in names if imported in modules and imported != module}
        # `from package import submodule` names the package too; the arrow that matters goes to the submodule.
        edges[module] = {t for t in targets if not any(other.startswith(t + ".") for other in targets)}
    assert find_cycle(edges) is None


def test_only_entry_points_import_ops() -> None:
    """`backend/ops` (CLI, supervisor, QA gate, rehearsal) is started as a command, never imported by the product:
    a worker's nightly QA task runs `python -m backend.ops.cli qa-nightly` as a child process."""
    wrong = sorted(arrow for top in PACKAGES if top != "backend" for arrow in arrows(top, "backend.ops"))
    wrong += [arrow for arrow in arrows("backend", "backend.ops") if not within(arrow.split(" -> ")[0], "backend.ops")]
    assert wrong == []


def reachable(start: str) -> set[str]:
    """Every project module `start` imports, directly or through others (lazy imports included)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for imported in GRAPH.get(todo.pop(), ()):
            if imported in GRAPH and imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def test_workers_never_reach_admission_or_enqueue() -> None:
    """A worker never runs the web tier's admission checks: what follows a job's end (usage, webhooks, a batch's next
    line) is the job lifecycle's, and a next batch line is sent through the queue like any job."""
    worker_modules = [module for module in GRAPH if any(within(module, side) for side in WORKER_SIDE)]
    assert worker_modules, "the worker side is found"
    wrong = sorted(f"{module} reaches {target}" for module in worker_modules for target in reachable(module)
                   if any(within(target, rule) for rule in WEB_ADMISSION))
    assert wrong == []


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
