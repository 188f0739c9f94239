"""Continuous batching: one model, many streams, decoded together a step at a time.

A GPU worker runs several jobs at once (`LOCKN_GPU_MAX_STREAMS` threads of one Celery worker process). Each job's
thread asks its engine for a sentence's audio; the engine hands the request to its `StreamBatcher`, whose one
thread owns the model. Every step it decodes one frame for *every* active stream in one batched forward pass, so
eight streams cost about what one does on a GPU that one stream leaves mostly idle (seen: ~11 % busy). Streams
join and leave between steps (continuous batching): a new request is prefilled as soon as a slot is free, and a
finished or cancelled one leaves without disturbing the others.

The batcher knows nothing of Qwen or Fish: a `StreamDecoder` does the model work (prefill the requests waiting,
step a batch, say what audio each stream has ready). Requests that arrive together are prefilled together in one
pass (`prefill_many`), so eight jobs starting at once wait for one prefill, not eight in turn. Audio reaches the
caller as soon as the decoder releases it (every few codec frames), so first audio no longer waits for a whole
sentence.

Other model work that must run on the thread that owns the model (a decoder's warm-up: CUDA graphs are recorded
per thread) is handed to it with `call`.

One request's bad input fails that request only (its prefill's exception goes to its own stream). A failing *step*
is an engine bug that no stream can survive: every active stream gets the error and the batcher goes on serving
new requests.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

State = TypeVar("State")
#: How long a waiting caller sleeps between checks that the batcher thread is still alive.
_POLL_S = 1.0


class StreamDecoder(Protocol[State]):
    """The model side of continuous batching; every method runs on the batcher's one thread."""

    def prefill_many(self, requests: Sequence[Any]) -> list[State | Exception]:
        """Start each request's stream (prompt → first token), all in one pass; a request's own fault is its
        entry (an exception), not raised (`prefill_each`). Raising fails every one of these requests."""

    def step(self, states: Sequence[State]) -> list[tuple[list[np.ndarray], bool]]:
        """Advance every state by one frame, together; per state: the audio chunks it has ready, and whether it
        has finished (its last audio included)."""

    def release(self, state: State) -> None:
        """A stream left the batch (finished, cancelled or failed): forget what it held."""


Prepared = TypeVar("Prepared")


def prefill_each(requests: Sequence[Any], prepare: Callable[[Any], Prepared],
                 start: Callable[[list[Prepared]], list[State]]) -> list[State | Exception]:
    """A decoder's `prefill_many`: `prepare` each request (its prompt; raising fails that request alone, its
    exception standing in its place), then `start` all the prepared ones together (→ their states, in order)."""
    results: list[State | Exception | None] = []
    prepared: list[tuple[int, Prepared]] = []  # (its place in results, what `prepare` made)
    for request in requests:
        try:
            prepared.append((len(results), prepare(request)))
        except Exception as exc:  # noqa: BLE001 - this request's own fault: handed back, not raised
            results.append(exc)
            continue
        results.append(None)
    states = start([made for _, made in prepared]) if prepared else []
    for (index, _), state in zip(prepared, states):
        results[index] = state
    return results  # type: ignore[return-value]


def prefill_one(decoder: StreamDecoder[State], request: Any) -> State:
    """One request's stream through `decoder.prefill_many`, its own fault raised (tests and warm-ups start one)."""
    started = decoder.prefill_many([request])[0]
    if isinstance(started, Exception):
        raise started
    return started


class _End:
    """Marks the end of a stream's chunks."""


_END = _End()


@dataclass(eq=False)
class _Call:
    """Model work a caller hands to the batcher's thread (`StreamBatcher.call`) and waits for."""

    work: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            self.error = exc
        self.done.set()


@dataclass(eq=False)
class _Stream:
    request: Any
    chunks: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    state: Any = None


class StreamBatcher(Generic[State]):
    """Feeds up to `max_streams` requests through `decoder` together; `stream()` is called from any thread."""

    def __init__(self, decoder: StreamDecoder[State], max_streams: int, name: str = "stream-batcher") -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.decoder, self.max_streams = decoder, max_streams
        self._pending: queue.SimpleQueue[_Stream | _Call] = queue.SimpleQueue()
        self._active: list[_Stream] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        #: The most streams ever decoded together (what a test or a bench reads to see batching happened).
        self.peak_streams = 0

    def stream(self, request: Any) -> Iterator[np.ndarray]:
        """The request's audio chunks, as the decoder releases them. Closing the iterator early (the job was
        cancelled, the caller went away) takes the stream out of the batch before its next step."""
        entry = _Stream(request)
        self._pending.put(entry)
        try:
            while True:
                try:
                    item = entry.chunks.get(timeout=_POLL_S)
                except queue.Empty:
                    if not self._thread.is_alive():
                        raise RuntimeError("the engine's decoding thread has stopped") from None
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            entry.cancelled.set()

    def call(self, work: Callable[[], Any]) -> Any:
        """Run `work` on the batcher's thread (between steps, once a slot is free) and hand back its result or
        raise its error. For model work that must happen on the thread that decodes: CUDA graphs are recorded
        per thread, so a decoder's warm-up only serves the streams if it runs where they are decoded."""
        call = _Call(work)
        self._pending.put(call)
        while not call.done.wait(timeout=_POLL_S):
            if not self._thread.is_alive():
                raise RuntimeError("the engine's decoding thread has stopped")
        if call.error is not None:
            raise call.error
        return call.result

    @property
    def active_streams(self) -> int:
        return len(self._active)

    # ----- the batcher's own thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._admit(block=not self._active)
            self._drop_cancelled()
            if self._active:
                self._step()

    def _admit(self, block: bool) -> None:
        """Prefill the requests waiting, as many as there are free slots, together; with `block`, sleep until one
        arrives. Calls waiting among them run first."""
        waiting: list[_Stream] = []
        while len(self._active) + len(waiting) < self.max_streams:
            try:
                entry = self._pending.get(block=block)
            except queue.Empty:
                break
            block = False
            if isinstance(entry, _Call):
                entry.run()
            elif not entry.cancelled.is_set():
                waiting.append(entry)
        for entry, state in zip(waiting, self._prefill(waiting)):
            if isinstance(state, Exception):
                entry.chunks.put(state)
                continue
            entry.state = state
            self._active.append(entry)
        self.peak_streams = max(self.peak_streams, len(self._active))

    def _prefill(self, entries: list[_Stream]) -> list[Any]:
        """Each entry's first state, or the exception that failed it, in one `prefill_many` (a failure of the
        whole pass fails them all; later requests may still start)."""
        if not entries:
            return []
        try:
            return list(self.decoder.prefill_many([entry.request for entry in entries]))
        except Exception as exc:  # noqa: BLE001 - the engine's fault: these requests fail, later ones may not
            return [exc] * len(entries)

    def _drop_cancelled(self) -> None:
        for entry in [e for e in self._active if e.cancelled.is_set()]:
            self._leave(entry)

    def _step(self) -> None:
        try:
            results = self.decoder.step([entry.state for entry in self._active])
        except Exception as exc:  # noqa: BLE001 - no stream survives a failed batched step; new ones may
            for entry in list(self._active):
                entry.chunks.put(exc)
                self._leave(entry)
            return
        for entry, (chunks, finished) in zip(list(self._active), results):
            for chunk in chunks:
                entry.chunks.put(chunk)
            if finished:
                entry.chunks.put(_END)
                self._leave(entry)

    def _leave(self, entry: _Stream) -> None:
        self._active.remove(entry)
        try:
            self.decoder.release(entry.state)
        except Exception:  # noqa: BLE001 - forgetting a stream must not stop the others
            pass
