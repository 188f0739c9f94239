"""A job's end and what follows it: usage a worker learns at a job's end survives the worker's death.

A batch's first line is sent by the web tier; every later one by the worker, when the line before it ends. What a
line costs (its characters, its audio seconds) must be in `key_usage` as soon as the line is seen ended, even when
the pool process that ran it is killed the next moment (a pool process killed with SIGKILL runs no exit hook).
"""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from backend.core.db import get_engine
from backend.core.models import BatchLine, KeyUsage
from backend.services.jobs import batches

OWNER = "auth0|lifecycle"
VOICE = "en_US-joe-medium"


def _ended_lines(batch_id: str) -> list[BatchLine]:
    with Session(get_engine()) as session:
        return list(session.exec(select(BatchLine).where(BatchLine.batch_id == batch_id,
                                                         col(BatchLine.status).in_(("succeeded", "failed")))).all())


def _usage(key_id: str) -> tuple[int, float]:
    with Session(get_engine()) as session:
        chars, seconds = session.exec(select(func.coalesce(func.sum(KeyUsage.chars), 0),
                                             func.coalesce(func.sum(KeyUsage.audio_seconds), 0.0))
                                      .where(KeyUsage.key_id == key_id)).one()
    return int(chars), float(seconds)


def test_a_batch_lines_usage_survives_its_pool_process_killed_right_after_it_ends(worker, key_service) -> None:
    from backend.services.keys.service import KeySpec

    row, _ = key_service.create(OWNER, KeySpec("batch usage"))
    lines = [{"text": f"Line number {n} of a batch whose worker dies.", "voice": VOICE} for n in range(8)]
    batch = batches.create_batch(OWNER, "\n".join(json.dumps(line) for line in lines).encode(), key_id=row.id)
    deadline = time.monotonic() + 90
    while len(ended := _ended_lines(batch.id)) < 2:  # the second line was sent by the worker, not by this process
        assert time.monotonic() < deadline, "the batch's first two lines did not end"
        time.sleep(0.01)
    main = psutil.Process(worker.children[0][1].pid)
    for pool_process in main.children():
        os.kill(pool_process.pid, signal.SIGKILL)  # no exit hook runs: nothing buffered there is written
    ended = _ended_lines(batch.id)  # the pool is dead: no line ends after this read
    chars, seconds = _usage(row.id)
    assert chars == sum(len(line.text) for line in ended), "a line seen ended must have its characters in usage"
    assert seconds == pytest.approx(sum(line.duration_s or 0.0 for line in ended), abs=0.01)
    assert all(line.duration_s for line in ended if line.status == "succeeded")
