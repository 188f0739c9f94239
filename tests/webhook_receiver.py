"""A webhook receiver on loopback for the tests (and the browser suite): records requests, answers as told."""

from __future__ import annotations

import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every request and answers with the statuses it is given."""

    def __init__(self, statuses: list[int] | None = None, redirect_to: str = "") -> None:
        self.requests: list[dict] = []
        self.statuses, self.redirect_to = list(statuses or []), redirect_to
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                receiver.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                                          "at": time.monotonic()})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/lockn?team=1"

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} deliveries arrived"
            time.sleep(0.05)
        return self.requests


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
                    if self._stopped.wait(rng.uniform(*self.interval_s)) or self._hung_up(connection):
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
    def _hung_up(connection: socket.socket) -> bool:
        """Whether the client closed its side (a read would say so at once, without blocking)."""
        try:
            connection.setblocking(False)
            try:
                return connection.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:
                return False
            finally:
                connection.setblocking(True)
                connection.settimeout(5)
        except OSError:
            return True

    def wait_for_hang_ups(self, count: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.closed) < count:
            assert time.monotonic() < deadline, f"{len(self.closed)} of {count} connections closed"
            time.sleep(0.05)

    def stop(self) -> None:
        self._stopped.set()
        self.listener.close()
