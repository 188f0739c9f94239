"""The worker process's Celery app (`celery -A workers.celery_app worker`): tasks, engines, heartbeat.

The app itself comes from `backend.queue.app.create_celery` (the web tier builds the same one to
send tasks by name); here it gains the task module and the worker's own lifecycle: each pool process
loads its engines once, the worker announces itself (heartbeat) and sweeps abandoned jobs.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

from celery.signals import (
    task_prerun, worker_init, worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown,
)
from redis import RedisError

from backend.core.heap import freeze_startup_heap
from backend.core.log_masking import install_key_masking
from backend.core.log_setup import configure_logging
from backend.core.metrics import serve_metrics
from backend.core.request_context import install_request_ids
from backend.core.redis_client import get_redis
from backend.core.settings import get_settings
from backend.queue.app import create_celery
from backend.queue.heartbeat import (
    HeartbeatThread, WorkerInfo, forget_pool_process, forget_pool_reports, publish, report_pool_process,
)
from backend.queue.routing import DEFAULT_QUEUE, QA_QUEUE, WEBHOOK_QUEUE, is_gpu_queue
from backend.services.keys.usage import close_process_usage
from workers import engine_loader
from workers.engine_loader import (
    describe_engine, engine_descriptions, load_engines, refresh_loaded_engines, voice_sources, warm_up_engine,
)
from workers.reaper import StalledJobSweeper

install_key_masking()
install_request_ids()
configure_logging(get_settings())
celery_app = create_celery(include=("workers.tasks",))
_heartbeat: HeartbeatThread | None = None
#: The worker's name, in a pool process (which reports what it loaded under it).
_pool_hostname: str | None = None


@worker_init.connect
def _lower_priority(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    """`LOCKN_WORKER_NICE`: the worker (and the pool it forks) yields the CPU to processes of normal priority,
    e.g. `make run`'s batch worker to the worker serving interactive requests on the same machine."""
    if nice := get_settings().worker_nice:
        os.nice(nice)


@worker_init.connect
def _forget_earlier_pool(sender, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    """Before this worker forks its pool: what a pool of an earlier run under the same name reported is not
    this run's."""
    try:
        forget_pool_reports(get_redis(), sender.hostname)
    except RedisError:
        pass  # no broker yet: the worker will fail to connect and say so itself


@worker_process_init.connect
def _load_engines(sender=None, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    """Each pool process loads its engines once, before its first job (not once per job), and reports what it
    loaded (the voices it could load, an engine that failed) for the worker's heartbeat: the main process, which
    announces the engines, loads none. What it loaded lives as long as the process, so the garbage collector stops
    walking it (a full collection would pause a job's live audio)."""
    global _pool_hostname
    load_engines()
    _pool_hostname = sender
    _report_what_this_process_loaded()
    freeze_startup_heap()


def _report_what_this_process_loaded() -> None:
    """This pool process's engines as loaded, and those that failed, for the worker's heartbeat."""
    try:
        report_pool_process(get_redis(), _pool_hostname,
                            [describe_engine(name, engine) for name, engine in engine_loader.LOADED.items()],
                            dict(engine_loader.FAILED))
    except RedisError:
        pass  # the heartbeat then says what the engines' files say; jobs still fail with the reason


@task_prerun.connect
def _take_in_new_voices(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    """Before each job in a pool process: voices pulled or dropped in since it loaded are loaded now (those
    replaced again, those removed forgotten), and its report says so. A stat of the voice files when nothing
    changed. (A GPU worker's engines have no voice files: their voices are their checkpoint's and the clones.)"""
    if _pool_hostname is not None and refresh_loaded_engines():
        _report_what_this_process_loaded()


@worker_process_shutdown.connect
def _flush_usage(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    """Pool processes exit without running atexit handlers: write what this process buffered explicitly (a job's
    own usage is not buffered: `lifecycle` writes it with the job's end), and take back its report."""
    close_process_usage()
    if _pool_hostname is not None:
        try:
            forget_pool_process(get_redis(), _pool_hostname)
        except RedisError:
            pass


@worker_ready.connect
def _start_heartbeat(sender, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    global _heartbeat
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender else [DEFAULT_QUEUE]
    # The QA and webhook workers load no engine: announcing one would make /health believe an engine is up.
    speaks = bool(set(queues) - {QA_QUEUE, WEBHOOK_QUEUE})
    engines, unavailable = engine_descriptions(get_settings().engine_names) if speaks else ([], {})
    gpu = any(is_gpu_queue(queue) for queue in queues)
    for engine in engines if gpu else []:
        engine["warming"] = True  # until `_warm_up` has run its first step (status cards say "warming up")
    info = WorkerInfo(hostname=getattr(sender, "hostname", socket.gethostname()), queues=queues, engines=engines,
                      unavailable=unavailable)
    _heartbeat = HeartbeatThread(get_redis(), info, refresh=None if gpu or not speaks else _voice_watch())
    _heartbeat.start()
    if gpu:  # one process runs every job (threads): load and warm its engines now, not in the first job
        threading.Thread(target=_warm_up, args=(info,), name="lockn-warm-up", daemon=True).start()
    StalledJobSweeper().start()
    if port := get_settings().worker_metrics_port:  # a worker machine's own /metrics, for Prometheus to scrape
        serve_metrics(port)


def _voice_watch() -> Callable[[WorkerInfo], None]:
    """For a CPU worker's heartbeat: describe its engines again when their voice files change (a voice pulled,
    dropped in, replaced or removed), so the voice library offers what is on disk within a beat; its pool
    processes load a new voice before their next job (`_take_in_new_voices`)."""
    names = get_settings().engine_names
    seen = voice_sources(names)

    def describe_again_if_changed(info: WorkerInfo) -> None:
        nonlocal seen
        if (now := voice_sources(names)) != seen:
            seen = now
            info.engines, info.unavailable = engine_descriptions(names)

    return describe_again_if_changed


def _warm_up(info: WorkerInfo) -> None:
    """Load this GPU worker's engines and speak one short sentence with each (CUDA kernels chosen, Fish's
    compiled frame step built), then tell the platform: each engine as loaded (its device, the streams it decodes
    together), or why it cannot speak, so the status cards and `/health` say "failed to load: …" rather than
    "warming up" for ever."""
    loaded = load_engines()
    for name in [description["name"] for description in info.engines]:
        reason = warm_up_engine(name)
        if reason is None:
            info.replace_engine({**describe_engine(name, loaded[name]), "warming": False})
        else:
            info.mark_unavailable(name, reason)
    try:
        publish(get_redis(), info)
    except RedisError:
        pass  # the next beat says it


@worker_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    if _heartbeat is not None:
        _heartbeat.stop()
    close_process_usage()  # what this process (a GPU worker's job threads, its sweep) buffered
