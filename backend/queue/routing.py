"""Queue names, task names and which queue runs which engine: one name for each, known to web and workers.

The web tier routes a job by its engine without importing the engine (a CPU web replica never
imports torch); workers consume the queues of the engines they load.
"""

from __future__ import annotations

from backend.queue.engines import ENGINES

#: Which queue runs which engine (each engine's registry entry says): GPU machines consume `gpu`, every machine
#: can consume `cpu`.
ENGINE_QUEUES = {name: spec.queue for name, spec in ENGINES.items()}
DEFAULT_QUEUE = "cpu"
#: The nightly QA run's own queue, consumed only by `backend.ops.cli beat`: the suite it runs sends synthesis
#: jobs to `cpu`, which a QA task occupying the only `cpu` slot would never see done.
QA_QUEUE = "qa"

SYNTHESIZE_TASK = "lockn.synthesize"
PING_TASK = "lockn.ping"
QA_TASK = "lockn.qa_regression"
WEBHOOK_TASK = "lockn.deliver_webhook"
#: Webhook deliveries wait in a queue of their own, consumed by a worker of their own (`make run` starts one, a
#: thread pool of `LOCKN_WEBHOOK_CONCURRENCY`): an endpoint that answers slowly holds a delivery slot, never the
#: slot that speaks, and the queues admission control measures hold speech jobs only.
WEBHOOK_QUEUE = "webhooks"


#: A batch's lines wait in their engine's queue with this suffix (`cpu-batch`, `gpu-batch`), so a worker can run
#: them apart from interactive requests, at a lower CPU priority (`make run` starts one with LOCKN_WORKER_NICE).
BATCH_SUFFIX = "-batch"


def is_gpu_queue(queue: str) -> bool:
    """Whether `queue` (interactive or batch) holds jobs of GPU engines."""
    return queue.removesuffix(BATCH_SUFFIX) == "gpu"


def queue_for(engine: str, batch: bool = False) -> str:
    """The queue whose workers run `engine` (its batch lines' queue, with `batch`)."""
    return ENGINE_QUEUES.get(engine, DEFAULT_QUEUE) + (BATCH_SUFFIX if batch else "")


def job_queues() -> list[str]:
    """Every queue a synthesis job can wait in, interactive and batch."""
    plain = {DEFAULT_QUEUE, *ENGINE_QUEUES.values()}
    return sorted(plain | {queue + BATCH_SUFFIX for queue in plain})


def queues_for(engines: list[str], batch: bool = False) -> str:
    """The queues a worker consumes for these engines, comma-separated (Celery's `--queues`); with `batch`,
    their batch queues."""
    return ",".join(sorted({queue_for(engine, batch) for engine in engines}))
