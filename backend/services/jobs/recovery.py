"""Jobs the broker lost, sent again: nothing queued is forgotten when the broker restarts without its data.

A job row is written before its message is sent, and a broker that restarts (a crash, a Ctrl-C, an
embedded broker whose last second of writes did not reach its append-only file) can lose messages.
`requeue_lost_jobs` compares the `queued` jobs with what the broker holds and sends the missing ones
again. Workers run it every sweep for jobs older than `LOST_AFTER_S` (a message is in the broker
milliseconds after its row); `make run` runs it at start with `after_crash=True`, before its worker
starts, when no worker can be running anything: `running` jobs were then cut off mid-way, and are
queued again too.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from backend.core.db import get_engine
from backend.core.models import Job, utcnow
from backend.core.redis_client import get_redis
from backend.queue.inventory import forget_unacked, held_task_ids
from backend.queue.routing import job_queues
from backend.services.jobs.records import send_job

#: A queued job whose message the broker has not held for this long is lost (not merely being sent).
LOST_AFTER_S = 60.0


def requeue_lost_jobs(after_crash: bool = False, lost_after_s: float = LOST_AFTER_S, batch: bool | None = None) -> int:
    """Send again every queued job older than `lost_after_s` the broker does not hold (and, `after_crash`,
    every running one); returns how many were sent. `batch` limits it to batch lines' jobs (True) or to the
    others (False): after one of two workers crashed, only the jobs of its kind were cut off."""
    # After a crash no worker holds anything: a message delivered to the dead worker (even one it had not
    # started, so its job still says `queued`) would come back only after the visibility timeout.
    held = held_task_ids(get_redis(), job_queues(), delivered=not after_crash)
    cutoff = utcnow() - timedelta(seconds=0 if after_crash else lost_after_s)
    statuses = ("queued", "running") if after_crash else ("queued",)
    with Session(get_engine(), expire_on_commit=False) as session:
        kind = [] if batch is None else [col(Job.batch_id).is_not(None) if batch else col(Job.batch_id).is_(None)]
        candidates = session.exec(select(Job).where(col(Job.status).in_(statuses), Job.created_at <= cutoff,
                                                    *kind)).all()
        lost = [job for job in candidates if job.status == "running" or job.id not in held]
        running = [job.id for job in lost if job.status == "running"]
        if running:
            session.exec(update(Job).where(col(Job.id).in_(running), col(Job.status) == "running")  # type: ignore[call-overload]
                         .values(status="queued", started_at=None, progress=0.0, chars_done=0))
            session.commit()
    if after_crash and lost:
        forget_unacked(get_redis(), {job.id for job in lost})  # their dead deliveries must not come back too
    for job in lost:
        send_job(job)
    return len(lost)
