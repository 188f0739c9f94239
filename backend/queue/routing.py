"""Queue names, task names and which queue runs which engine: one name for each, known to web and workers.

The web tier routes a job by its engine without importing the engine (a CPU web replica never
imports torch); workers consume the queues of the engines they load.
"""

from __future__ import annotations

#: Which queue runs which engine: GPU machines consume `gpu`, every machine can consume `cpu`.
ENGINE_QUEUES = {"piper": "cpu", "fish": "gpu", "qwen3": "gpu"}
DEFAULT_QUEUE = "cpu"
#: The nightly QA run's own queue, consumed only by `backend.ops.cli beat`: the suite it runs sends synthesis
#: jobs to `cpu`, which a QA task occupying the only `cpu` slot would never see done.
QA_QUEUE = "qa"

SYNTHESIZE_TASK = "lockn.synthesize"
PING_TASK = "lockn.ping"
QA_TASK = "lockn.qa_regression"
#: Webhook deliveries go to `cpu` (every deployment has a CPU worker); each attempt is bounded by a timeout.
WEBHOOK_TASK = "lockn.deliver_webhook"


def queue_for(engine: str) -> str:
    """The queue whose workers run `engine`."""
    return ENGINE_QUEUES.get(engine, DEFAULT_QUEUE)


def queues_for(engines: list[str]) -> str:
    """The queues a worker consumes for these engines, comma-separated (Celery's `--queues`)."""
    return ",".join(sorted({queue_for(engine) for engine in engines}))
