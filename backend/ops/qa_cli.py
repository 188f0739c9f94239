"""`python -m backend.ops.cli qa | promote | beat | qa-nightly`: the release gate from a shell (`make qa`, `make promote`).

Exit codes: 0 passed / promoted; 1 the suite failed or promotion was refused; 2 bad input or a
set-up problem (one sentence on stderr says which).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from backend.ops.qa_gate import (
    DEFAULT_ARTIFACTS, PromotionRefused, QaGateError, describe_run, promote, run_nightly, run_smoke_suite,
)
from backend.services.status.qa_runs import TRIGGERS, InvalidQaRun, normalise_target
from backend.core.settings import PROJECT_ROOT, Settings, get_settings

QA_COMMANDS = ("qa", "promote", "beat", "qa-nightly")
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


def add_qa_commands(commands: argparse._SubParsersAction) -> None:
    qa = commands.add_parser("qa", help="run the smoke suite against a deployment and record the run")
    qa.add_argument("--base-url", default=None, help="the deployment, e.g. http://host:3000 (default: this one)")
    qa.add_argument("--trigger", choices=TRIGGERS, default="manual")
    qa.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS,
                    help="where the JUnit XML, HTML report and screenshots go (default: qa/artifacts)")
    promote_parser = commands.add_parser(
        "promote", help="tag a release and run LOCKN_PROMOTE_COMMAND, only if FROM's last QA run passed")
    promote_parser.add_argument("--from", dest="source", required=True, help="base URL of the tested deployment")
    promote_parser.add_argument("--to", dest="target", required=True, help="name of the target (e.g. prod)")
    promote_parser.add_argument("--repo", type=Path, default=PROJECT_ROOT, help="git repository to tag")
    commands.add_parser("beat", help="nightly QA: a worker for the qa queue with the beat scheduler "
                                     "(needs LOCKN_QA_NIGHTLY_AT)")
    commands.add_parser("qa-nightly", help="the nightly regression once: the smoke suite against this deployment, "
                                           "recorded as `nightly` (what the qa worker's nightly task runs)")


def beat_command(settings: Settings) -> list[str]:
    """A Celery worker that consumes only the `qa` queue, with the beat scheduler embedded (`--beat`).

    Its own process and queue because the suite's synthesis requests need the `cpu` workers free; the
    solo pool because the task's only work is a child process (and solo loads no engine); no gossip or
    mingle, since a solo worker busy for the whole run would only log missed Celery heartbeats (LockN's own
    heartbeat in Redis is what /health reads).
    """
    from backend.queue.routing import QA_QUEUE

    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "--quiet", "worker", "--beat",
            "--schedule", str(settings.data_dir / "qa-beat-schedule"), "--queues", QA_QUEUE, "--pool", "solo",
            "--without-gossip", "--without-mingle", "--loglevel", "INFO",
            "--hostname", f"{QA_QUEUE}@%h-{os.getpid()}"]


def run_qa_command(args: argparse.Namespace) -> int:
    """Dispatch one gate command; errors become one sentence and an exit code."""
    try:
        return _dispatch(args, get_settings())
    except PromotionRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (QaGateError, InvalidQaRun) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "beat":
        if not settings.qa_nightly_at:
            raise QaGateError("nightly QA is off: set LOCKN_QA_NIGHTLY_AT=HH:MM (UTC) to run it")
        os.execv(sys.executable, beat_command(settings))
    from backend.core.db import migrate

    migrate()
    if args.command == "qa-nightly":
        run = run_nightly()
        print(describe_run(run))
        return 0 if run.passed else EXIT_FAILED
    if args.command == "promote":
        tag = promote(args.source, args.target, repo=args.repo)
        print(f"promoted {normalise_target(args.source)} to {args.target}: tagged {tag}")
        return 0
    run = run_smoke_suite(args.base_url or settings.base_url, args.trigger, os.environ.get("LOCKN_QA_KEY"),
                          args.artifacts, echo=True)
    print(describe_run(run))
    print(f"JUnit XML and HTML report: {args.artifacts}")
    return 0 if run.passed else EXIT_FAILED
