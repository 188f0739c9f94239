"""A buffer's flusher: writes what a recorder buffered every few seconds, and once more at a clean exit.

Recorders (key usage, the request log) keep the request path free of database writes: they buffer in
memory and a daemon thread flushes. This is that thread, once for every recorder.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("lockn.batching")


class PeriodicFlush:
    """Calls `flush` every `interval_s` on a daemon thread started by the first `ensure_running`; a failing
    flush is retried on the next tick (the recorder keeps what it could not write); `close` flushes once more."""

    def __init__(self, flush: Callable[[], object], interval_s: float, name: str) -> None:
        self._flush, self._interval_s, self._name = flush, interval_s, name
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_running(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self._flush()
            except Exception:  # noqa: BLE001 - the recorder logged it; the loop must survive a database outage
                pass

    def abandon(self) -> None:
        """Forget the exit hook: a forked child's copy of its parent's flusher (whose thread did not follow it
        into the child) must never flush at the child's exit."""
        atexit.unregister(self.close)

    def close(self) -> None:
        """Stop the thread and write what is left (clean shutdown)."""
        atexit.unregister(self.close)
        self._stopped.set()
        try:
            self._flush()
        except Exception:  # noqa: BLE001
            logger.error("%s: what was buffered could not be written at shutdown", self._name)
