"""A round-robin TCP proxy for the local rehearsal (`make prod-local`): one URL in front of the replicas.

Production puts Caddy (deploy/Caddyfile) in front of the replicas; a rehearsal on
a developer's machine has no Caddy, so this stands in for it. It balances whole
connections (HTTP keep-alive and Reflex's websocket alike) across the replicas and
skips one that refuses connections, so stopping a replica is invisible to users,
which is what the rehearsal is for. It never reads or rewrites the bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import Sequence

CONNECT_TIMEOUT_S = 2.0
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 28\r\n" \
              b"Connection: close\r\n\r\nno LockN replica is running\n"


class RoundRobinProxy:
    def __init__(self, backends: Sequence[tuple[str, int]]) -> None:
        self.backends = list(backends)
        self._next = itertools.cycle(range(len(self.backends)))

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The next replica that accepts a connection, or None when all of them refuse."""
        for _ in self.backends:
            host, port = self.backends[next(self._next)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError):
                continue
        return None

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            client_writer.write(BAD_GATEWAY)
            await _close(client_writer)
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def serve(listen: tuple[str, int], backends: Sequence[tuple[str, int]]) -> None:
    proxy = RoundRobinProxy(backends)
    server = await asyncio.start_server(proxy.handle, *listen)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Round-robin TCP proxy for LockN's local rehearsal.")
    parser.add_argument("--listen", required=True, help="host:port to accept connections on")
    parser.add_argument("--backend", action="append", required=True, help="host:port of a replica (repeat)")
    args = parser.parse_args(argv)
    asyncio.run(serve(parse_address(args.listen), [parse_address(b) for b in args.backend]))


if __name__ == "__main__":
    main()
