"""Jobs whose worker died: found and failed with a message, so nothing stays `running` forever.

A worker that dies mid-job leaves its message unacknowledged; Redis hands it to
another worker after the redelivery timeout, and that worker starts the job over
(`started_at` is reset). So a job still `running` after one full time limit *plus*
the redelivery timeout (and a grace period) has lost its worker and its message:
no one will ever finish it. The reaper marks it failed. It runs in every worker
(a thread, every `SWEEP_INTERVAL_S`) and on every status read in the web tier,
so it works even when no worker is left. The update is conditional, so several
reapers at once are harmless.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from backend.core.db import get_engine
from backend.core.models import Job, as_utc, utcnow
from backend.core.settings import Settings, get_settings

GRACE_S = 30
SWEEP_INTERVAL_S = 30.0
STALLED_MESSAGE = ("The worker running this job stopped and the job could not be finished; "
                   "nothing was charged for audio. Please submit it again.")


def stalled_after_s(settings: Settings) -> int:
    """Seconds a job may stay `running` before it is certainly abandoned."""
    return settings.job_time_limit_s + settings.redelivery_timeout_s + GRACE_S


def stall_cutoff(now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(seconds=stalled_after_s(get_settings()))


def is_stalled(job: Job, now: datetime | None = None) -> bool:
    """Whether `job` is `running` on a worker that can no longer be alive."""
    return job.status == "running" and job.started_at is not None and as_utc(job.started_at) < stall_cutoff(now)


def reap_stalled_jobs(now: datetime | None = None) -> int:
    """Fail every abandoned job; returns how many were failed."""
    now = now or utcnow()
    statement = (update(Job)
                 .where(col(Job.status) == "running", col(Job.started_at) < stall_cutoff(now))
                 .values(status="failed", error=STALLED_MESSAGE, finished_at=now))
    with Session(get_engine()) as session:
        result = session.exec(statement)  # type: ignore[call-overload]
        session.commit()
        return result.rowcount or 0
