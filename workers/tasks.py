"""Celery tasks: thin wrappers that give `backend.services.jobs.runner` Celery's retries, time limits and redelivery."""

from __future__ import annotations

import subprocess
import sys
import time

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from backend.queue.routing import PING_TASK, QA_TASK, SYNTHESIZE_TASK, WEBHOOK_TASK
from backend.services.jobs import lifecycle
from backend.services.jobs.runner import JobCancelled, SynthesisError, run_job
from backend.services.status import qa_runs
from backend.services.webhooks.service import deliver
from workers.celery_app import celery_app
from workers import engine_loader
from workers.engine_loader import load_engines

#: Longer than any delivery attempt may take (`LOCKN_WEBHOOK_TIMEOUT_S` is at most 30 s), far shorter than a job's.
WEBHOOK_TASK_SOFT_LIMIT_S = 45
#: Errors worth another try (the database blinked); anything else is the job's own fault and is final.
TRANSIENT_ERRORS = (OperationalError, ConnectionError)


@celery_app.task(name=WEBHOOK_TASK, ignore_result=True, soft_time_limit=WEBHOOK_TASK_SOFT_LIMIT_S,
                 time_limit=WEBHOOK_TASK_SOFT_LIMIT_S + 15)
def deliver_webhook(delivery_id: str) -> None:
    """One attempt at one webhook delivery; the service schedules retries (the sweep sends them when due).

    The attempt keeps its own deadline (`LOCKN_WEBHOOK_TIMEOUT_S`); the time limits here only matter should a
    prefork worker ever consume the `webhooks` queue, and `deliver` records their interruption as a failed try."""
    deliver(delivery_id)


@celery_app.task(name=PING_TASK)
def ping() -> dict[str, float]:
    """Answer with the worker's clock: proves a job goes through the queue."""
    return {"pong": time.time()}


@celery_app.task(name=SYNTHESIZE_TASK, bind=True, autoretry_for=TRANSIENT_ERRORS, retry_backoff=True,
                 retry_backoff_max=30, max_retries=3, ignore_result=True)
def synthesize(self, job_id: str) -> dict:  # type: ignore[no-untyped-def]
    """Run one job; permanent failures mark it failed (never retried), transient ones retry with backoff.

    No Celery result is stored: the job row is where status, progress and errors live (every web
    replica reads it), and a result per job would only cost the worker round trips to the broker and
    leave a key in Redis for a day."""
    try:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        return run_job(job_id, load_engines(), redelivered, engine_loader.FAILED)
    except JobCancelled:
        lifecycle.cancelled(job_id)
        return {"job_id": job_id, "status": "failed", "error": "cancelled"}
    except SynthesisError as exc:
        lifecycle.fail(job_id, str(exc))
        return {"job_id": job_id, "status": "failed", "error": str(exc)}
    except SoftTimeLimitExceeded:
        lifecycle.fail(job_id, "the job took longer than the time limit and was stopped")
        return {"job_id": job_id, "status": "failed", "error": "time limit"}
    except TRANSIENT_ERRORS:
        if self.request.retries >= self.max_retries:
            lifecycle.fail(job_id, "the worker could not reach the database; please try again")
        raise
    except Exception as exc:  # noqa: BLE001 - an engine bug must not leave the job "running" forever
        lifecycle.fail(job_id, f"synthesis failed: {type(exc).__name__}")
        raise


#: Longer than the suite's own limit (backend.ops.qa_gate.SUITE_TIMEOUT_S), which stops and records a stuck run first;
#: it replaces the synthesis jobs' limit should a prefork worker ever consume the `qa` queue.
QA_TASK_TIME_LIMIT_S = 35 * 60


@celery_app.task(name=QA_TASK, acks_late=False, soft_time_limit=QA_TASK_TIME_LIMIT_S,
                 time_limit=QA_TASK_TIME_LIMIT_S + 60)
def qa_regression() -> dict[str, object]:
    """Nightly regression (Celery beat, `LOCKN_QA_NIGHTLY_AT`): the smoke suite against this deployment,
    recorded with trigger `nightly`. Routed to the `qa` queue (see backend.queue.routing.QA_QUEUE).

    The run is the operations command `python -m backend.ops.cli qa-nightly`, in a child process: only entry
    points import `backend.ops`, and the task only starts it and reads the run it recorded.
    Acknowledged on receipt: a run can outlast the broker's redelivery timeout, and a second copy of it
    would only record the same night twice; a run lost with its worker is simply the next night's."""
    before = qa_runs.last_run()
    subprocess.run([sys.executable, "-m", "backend.ops.cli", "qa-nightly"], check=False,
                   timeout=QA_TASK_TIME_LIMIT_S - 60)
    run = qa_runs.last_run()
    if run is None or (before is not None and run.id == before.id):
        raise RuntimeError("the nightly QA run recorded nothing; its output is in the qa worker's log")
    return {"id": run.id, "target": run.target, "passed": run.passed, "passed_count": run.passed_count,
            "failed_count": run.failed_count, "skipped_count": run.skipped_count}
