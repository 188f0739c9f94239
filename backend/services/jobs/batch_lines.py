"""A running batch's lines: each sent as an ordinary job a few at a time, recorded when it ends, the batch completed.

The web tier makes a batch (`batches.create_batch`, where the whole batch is admitted once: its upload counted on
the rate limit, all its characters reserved on the quota) and starts it with `advance`; from then on every line
goes through the queue like any job: when a line's job ends, the worker (`lifecycle`) calls `line_finished`, which
records the line and sends the next one (`advance`). Nothing here applies admission's rules (rate limits,
concurrency caps, quotas): an owner's batches together never hold more than `LOCKN_BATCH_SLOTS` jobs queued or
running at once (oldest batch first), so interactive requests never wait behind a batch's thousand lines, only, at
worst, behind that many of its jobs, and one owner's ten batches take no more of the batch queue than one.

A line's usage (its characters, its audio seconds) is written to the key's `key_usage` in the transaction that
records the line's end (`_finish_line`): exactly once, and in the database as soon as the line is seen ended.

No line starts after a cancel: a line is sent only while its batch runs, its job row is written before its message
is sent and looked at again after (`_dispatch`), and a worker starts a batch job only in the same UPDATE that sees
its batch running (`may_start`); a job refused so is cancelled and its line recorded (`stop_if_cancelled`). The
workers' sweep calls `advance_all`, so a batch stalled by a broker outage (or a worker killed between a job's end
and its line's) carries on.
"""

from __future__ import annotations

import logging

from sqlalchemy import ColumnElement, func, or_, update
from sqlmodel import Session, col, select

from backend.core.db import get_engine, serialize_for
from backend.core.models import ApiKey, Batch, BatchLine, Job, utcnow
from backend.core.settings import get_settings
from backend.services.common.errors import ServiceUnavailable
from backend.services.jobs.records import (
    JobNotFound, cached_job, cancel_job, new_job, request_address, send_written_job,
    validate_request, write_job,
)
from backend.services.keys.service import KeyRejected, key_status
from backend.services.keys.usage import add_usage
from backend.services.webhooks import service as webhooks

FINISHED_LINE = ("succeeded", "failed", "cancelled")
logger = logging.getLogger("lockn.batches")


def advance(batch_id: str) -> bool:
    """Send the batch's next lines while its owner has fewer than `LOCKN_BATCH_SLOTS` batch jobs in flight (all
    of the owner's batches together: a key that sends ten batches holds the batch queue no longer than one that
    sends one). False when the owner's slots are full (their other batches need not be looked at)."""
    reconcile(batch_id)
    while True:
        claimed = _claim_next(batch_id)
        if claimed is _NO_LINE_LEFT:
            _complete_if_done(batch_id)
            return True
        if claimed is _SLOTS_FULL:
            return False
        if claimed is None:
            return True
        _dispatch(*claimed)


def advance_owner(owner: str) -> None:
    """Carry on the owner's running batches, oldest first, while the owner has a slot free."""
    with Session(get_engine()) as session:
        running = session.exec(select(Batch.id).where(Batch.owner == owner, Batch.status == "running")
                               .order_by(col(Batch.created_at))).all()
    for batch_id in running:
        if not advance(batch_id):
            return


def advance_all() -> None:
    """Carry on every running batch (the workers' sweep: a line the broker lost, a line ended unrecorded)."""
    with Session(get_engine()) as session:
        owners = session.exec(select(Batch.owner).where(Batch.status == "running").distinct()).all()
    for owner in owners:
        advance_owner(owner)


def line_finished(job: Job) -> None:
    """A batch job ended (`lifecycle` calls this): record the line, send the next one."""
    if job.batch_id is None:
        return
    try:
        _finish_line(job.batch_id, job.id, job.status, job.error, job.duration_s)
        advance_owner(job.owner)
    except Exception:  # noqa: BLE001 - the job itself is done and stays so; the sweep's `advance_all` catches up
        logger.exception("batch %s: could not record line of job %s", job.batch_id, job.id)


def may_start() -> ColumnElement[bool]:
    """The condition a worker's claim of a job adds to its UPDATE: not a batch line, or one whose batch still
    runs. Checked in the claim's own statement, so a cancel that committed first always wins."""
    return or_(col(Job.batch_id).is_(None), col(Job.batch_id).in_(select(Batch.id).where(Batch.status == "running")))


def stop_if_cancelled(job: Job) -> bool:
    """A worker could not claim `job`: when its batch no longer runs, cancel it (it never started) and record its
    line; True then. False when the claim failed for another reason (another worker has it)."""
    if job.batch_id is None or _batch_running(job.batch_id):
        return False
    try:
        cancel_job(job.id, job.owner)
    except JobNotFound:
        pass
    reconcile(job.batch_id)
    return True


# ----- inside --------------------------------------------------------------------------------------------


def _finish_line(batch_id: str, job_id: str, status: str, error: str | None, duration_s: float | None) -> None:
    """Record a line's end once (the line must still be `queued` with this job), count it on the batch, and write
    its usage on the batch's key, all in one transaction."""
    status = "succeeded" if status == "succeeded" else "failed"
    with get_engine().begin() as connection:
        ended = connection.execute(update(BatchLine).where(col(BatchLine.batch_id) == batch_id,
                                                           col(BatchLine.job_id) == job_id,
                                                           col(BatchLine.status) == "queued")
                                   .values(status=status, error=error, duration_s=duration_s)
                                   .returning(col(BatchLine.text))).all()
        if not ended:
            return
        counter = Batch.done if status == "succeeded" else Batch.failed
        key_id = connection.execute(update(Batch).where(col(Batch.id) == batch_id).values({counter: counter + 1})
                                    .returning(col(Batch.key_id))).scalar()
        if key_id is not None:
            add_usage(connection, key_id, chars=len(ended[0][0]), audio_seconds=duration_s or 0.0)


def reconcile(batch_id: str) -> None:
    """Lines whose job ended without the worker saying so (cancelled by its owner, failed by the reaper,
    deleted, or its worker killed between the job's end and the line's) are recorded now, so they do not hold
    the batch's slots."""
    with Session(get_engine()) as session:
        queued = session.exec(select(BatchLine.job_id, Job.status, Job.error, Job.duration_s)
                              .join(Job, col(Job.id) == col(BatchLine.job_id), isouter=True)
                              .where(BatchLine.batch_id == batch_id, BatchLine.status == "queued",
                                     col(BatchLine.job_id).is_not(None))).all()
    for job_id, status, error, duration_s in queued:
        if status is None or status in ("succeeded", "failed"):
            _finish_line(batch_id, job_id, status or "failed", error or ("the job was deleted" if status is None
                                                                         else None), duration_s)


def _batch_running(batch_id: str) -> bool:
    with Session(get_engine()) as session:
        return session.exec(select(Batch.status).where(Batch.id == batch_id)).first() == "running"


class _Outcome:
    """Why `_claim_next` claimed nothing."""


_NO_LINE_LEFT, _SLOTS_FULL = _Outcome(), _Outcome()


def _claim_next(batch_id: str) -> tuple[Batch, BatchLine] | _Outcome | None:
    """Take the batch's next pending line for sending: the batch and the line, `_SLOTS_FULL` when its owner
    already has `LOCKN_BATCH_SLOTS` lines queued or running, `_NO_LINE_LEFT`, or None when the batch no longer runs.

    Counted and claimed in one transaction serialized per owner (`serialize_for`): two lines ending at once on two
    workers cannot both see the last free slot. The claim is one UPDATE that sees the batch running, so a cancel
    cannot slip between the look and the claim."""
    with Session(get_engine()) as session:
        owner = session.exec(select(Batch.owner).where(Batch.id == batch_id)).first()
    if owner is None:
        return None
    with Session(get_engine(), expire_on_commit=False) as session:
        serialize_for(session, "batch-lines", owner)
        batch = session.get(Batch, batch_id)
        if batch is None or batch.status != "running":
            return None
        line = session.exec(select(BatchLine).where(BatchLine.batch_id == batch_id, BatchLine.status == "pending")
                            .order_by(col(BatchLine.line)).limit(1)).first()
        if line is None:
            return _NO_LINE_LEFT
        in_flight = session.exec(select(func.count()).select_from(BatchLine)
                                 .join(Batch, col(Batch.id) == col(BatchLine.batch_id))
                                 .where(Batch.owner == owner, BatchLine.status == "queued")).one()
        if in_flight >= get_settings().batch_slots:
            return _SLOTS_FULL
        running = select(Batch.id).where(Batch.id == batch_id, Batch.status == "running")
        claimed = session.execute(update(BatchLine).where(col(BatchLine.batch_id) == batch_id,
                                                          col(BatchLine.line) == line.line,
                                                          col(BatchLine.status) == "pending",
                                                          col(BatchLine.batch_id).in_(running))
                                  .values(status="queued")).rowcount == 1
        session.commit()
    return (batch, line) if claimed else None


def _dispatch(batch: Batch, line: BatchLine) -> None:
    """Send one claimed line as an ordinary job; a line that can no longer be spoken fails with the reason.

    The job's row is written and the line points at it before the message is sent, so whoever ends the job
    finds its line; a cancel that landed meanwhile is seen after the write, and the job never sent."""
    try:
        job = _line_job(batch, line)
    except ServiceUnavailable:  # no worker speaks the voice now: the next line's end or the sweep retries
        _set_line(line, "pending", None)
        return
    except Exception as exc:  # noqa: BLE001 - voice deleted, key revoked…: the line fails, the batch goes on
        _record_failed_line(batch.id, line, str(exc) or type(exc).__name__)
        return
    _set_line(line, "queued", job.id)
    if job.status == "succeeded":  # answered from the cache: no worker will report it (`advance`, looping,
        _finish_line(batch.id, job.id, job.status, job.error, job.duration_s)  # sends the next line)
    elif not _batch_running(batch.id):  # cancelled while this line was being written: its job is never sent
        stop_if_cancelled(job)
    else:
        try:
            send_written_job(job)
        except ServiceUnavailable:  # no broker: the row is gone, the line waits for the sweep
            _set_line(line, "pending", None)


def _line_job(batch: Batch, line: BatchLine) -> Job:
    """The line's job row, written: `queued`, or already `succeeded` when the same request was answered before
    (its audio is reused; a batch asking for captions reuses only audio made with them)."""
    if batch.key_id is not None:
        _check_key(batch.key_id)
    engine, version = validate_request(batch.owner, line.text, line.voice, line.format, 1.0)
    address = request_address(batch.owner, line.text, line.voice, line.format, 1.0, engine, version)
    job = new_job(batch.owner, line.text, line.voice, engine, line.format, 1.0, address, key_id=batch.key_id,
                  captions_requested=batch.captions, batch_id=batch.id)
    write_job(job, cached_job(address, batch.owner, batch.captions))
    return job


def _check_key(key_id: str) -> None:
    """`KeyRejected` when the batch's key was revoked or has expired since the batch was made."""
    with Session(get_engine()) as session:
        row = session.get(ApiKey, key_id)
    if row is None:
        raise KeyRejected("not_found")
    if (status := key_status(row, False)) in ("revoked", "expired"):
        raise KeyRejected(status)


def _set_line(line: BatchLine, status: str, job_id: str | None) -> None:
    with get_engine().begin() as connection:
        connection.execute(update(BatchLine).where(col(BatchLine.batch_id) == line.batch_id,
                                                   col(BatchLine.line) == line.line)
                           .values(status=status, job_id=job_id))


def _record_failed_line(batch_id: str, line: BatchLine, error: str) -> None:
    with get_engine().begin() as connection:
        connection.execute(update(BatchLine).where(col(BatchLine.batch_id) == batch_id, col(BatchLine.line) == line.line)
                           .values(status="failed", error=error[:500]))
        connection.execute(update(Batch).where(col(Batch.id) == batch_id).values(failed=Batch.failed + 1))


def _complete_if_done(batch_id: str) -> None:
    """Mark a running batch whose every line has ended `completed` (once) and tell its owner's webhooks."""
    with Session(get_engine()) as session:
        unfinished = session.exec(select(func.count()).select_from(BatchLine).where(
            BatchLine.batch_id == batch_id, col(BatchLine.status).not_in(FINISHED_LINE))).one()
    if unfinished:
        return
    with get_engine().begin() as connection:
        completed = connection.execute(update(Batch).where(col(Batch.id) == batch_id, col(Batch.status) == "running")
                                       .values(status="completed", finished_at=utcnow())).rowcount == 1
    if completed:
        with Session(get_engine()) as session:
            batch = session.get(Batch, batch_id)
        if batch is not None:
            base = get_settings().base_url
            webhooks.emit(batch.owner, "batch.completed", {
                "batch_id": batch.id, "total": batch.total, "done": batch.done, "failed": batch.failed,
                "archive_url": f"{base}/api/voice/batches/{batch.id}/archive.zip"})
