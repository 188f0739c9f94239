"""A hostile webhook endpoint on loopback, for `bench.flood`'s webhook phase and the tests: it trickles its answer.

A real socket server (no HTTP library: a library would answer properly). Nothing here imports pytest.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time


class Trickler:
    """A hostile endpoint on 127.0.0.1: a real socket server that reads the request, then trickles its answer's
    headers one byte every `interval_s` (a random 2–4 s by default), each byte well inside any per-read timeout.
    After `finish_after_s` it completes a `200` answer (a client that waited that long calls it delivered).
    Records when each connection opened and when the client hung up."""

    def __init__(self, interval_s: tuple[float, float] = (2.0, 4.0), finish_after_s: float = 60.0,
                 burst: bytes = b"") -> None:
        self.interval_s, self.finish_after_s, self.burst = interval_s, finish_after_s, burst
        self.opened: list[float] = []
        self.closed: list[float] = []
        self._stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/slow"
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def open_now(self) -> int:
        return len(self.opened) - len(self.closed)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection: socket.socket) -> None:
        self.opened.append(time.monotonic())
        started = time.monotonic()
        rng = random.Random(self.port + len(self.opened))
        answer = b"HTTP/1.1 200 OK\r\n" + self.burst
        try:
            with connection:
                connection.settimeout(5)
                connection.recv(65536)  # the request (headers and a small body)
                sent = 0
                while not self._stopped.is_set() and time.monotonic() - started < self.finish_after_s:
                    if self.burst and sent == 0:
                        connection.sendall(answer)
                        sent = len(answer)
                    else:
                        connection.sendall(answer[sent:sent + 1] if sent < len(answer)
                                           else self._header_byte(sent - len(answer)))
                        sent += 1
                    if self._hung_up_within(connection, rng.uniform(*self.interval_s)) or self._stopped.is_set():
                        return
                # Complete what was begun (the status line, or the header line in progress), then end the headers.
                rest = answer[sent:] if sent < len(answer) else b"\r\n" if (sent - len(answer)) % 40 else b""
                connection.sendall(rest + b"Content-Length: 0\r\n\r\n")
                time.sleep(0.2)
        except OSError:
            pass
        finally:
            self.closed.append(time.monotonic())

    @staticmethod
    def _header_byte(index: int) -> bytes:
        """Byte `index` of an endless run of `X-Slow: aaaa…` header lines."""
        line = b"X-Slow: " + b"a" * 30 + b"\r\n"  # 40 bytes
        return line[index % len(line):index % len(line) + 1]

    @staticmethod
    def _hung_up_within(connection: socket.socket, seconds: float) -> bool:
        """Wait `seconds` for the next byte's turn; True as soon as the client closes its side (so `closed` says
        when the client gave up, not when the next byte was due)."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            readable, _, _ = select.select([connection], [], [], left)
            if readable and connection.recv(65536) == b"":
                return True
        return False

    def wait_for_hang_ups(self, count: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.closed) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.closed)} of {count} connections closed within {timeout_s:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stopped.set()
        self.listener.close()
