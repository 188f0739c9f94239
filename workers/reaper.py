"""The worker side of the job reaper: a daemon thread that fails abandoned jobs (see `job_reaper`), sends
again the queued jobs the broker lost (see `job_recovery`), prunes the request log past its retention, and sends
the webhook deliveries whose retry is due and the `key.expiring` events (see `services/webhooks.py`), and deletes
staged Studio clips and unfinished uploads past their age (see `services/voices.py`)."""

from __future__ import annotations

import logging
import threading

from backend.services.jobs.reaper import SWEEP_INTERVAL_S, reap_stalled_jobs
from backend.services.jobs.recovery import requeue_lost_jobs
from backend.services.jobs.batch_lines import advance_all
from backend.services.accounts.request_log import prune_request_log
from backend.services.voices.service import sweep_staged_clips
from backend.services.webhooks.service import notify_expiring_keys, send_due_deliveries

logger = logging.getLogger("lockn.worker")


class StalledJobSweeper(threading.Thread):
    """Sweeps every `SWEEP_INTERVAL_S`; a database outage is logged and retried on the next sweep."""

    def __init__(self, interval_s: float = SWEEP_INTERVAL_S) -> None:
        super().__init__(name="lockn-reaper", daemon=True)
        self.interval_s = interval_s
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                if swept := sweep_staged_clips():  # files only: done even while the database or broker is down
                    logger.info("deleted %d staged clip(s) or unfinished upload(s) past their age", swept)
                if reaped := reap_stalled_jobs():
                    logger.warning("failed %d job(s) abandoned by a dead worker", reaped)
                if requeued := requeue_lost_jobs():
                    logger.warning("queued %d job(s) again that the broker had lost", requeued)
                prune_request_log()
                send_due_deliveries()
                advance_all()
                notify_expiring_keys()
            except Exception:  # noqa: BLE001 - the database or broker may be down; the next sweep retries
                logger.warning("stalled-job sweep failed; retrying in %.0f s", self.interval_s)

    def stop(self) -> None:
        self._stopped.set()
