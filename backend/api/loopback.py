"""Every loopback spelling of LockN's address opens the app: browsers are sent to the one it was built for.

The pages are built for `LOCKN_PUBLIC_URL` (by default `http://localhost:3000`): the websocket accepts
that origin only, and the session cookie belongs to that host. A person who types `127.0.0.1:3000` or
`[::1]:3000` would get a page whose websocket is refused and whose sign-in never sticks, so a browser
asking for a page there is redirected to the same path on the public URL. API clients (which do not
ask for HTML) are answered where they are: a key works on any address.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _host_and_port(netloc: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port or default_port
    except ValueError:  # a Host header with a port that is not a number
        port = -1
    return (parts.hostname or ""), port


class LoopbackToPublicUrl:
    """ASGI middleware: a browser's GET on another loopback name of our port → 307 to the public URL."""

    def __init__(self, app: ASGIApp, public_url: str) -> None:
        self.app = app
        self.public_url = public_url.rstrip("/")
        public = urlsplit(self.public_url)
        self.default_port = 443 if public.scheme == "https" else 80
        self.public_netloc = public.netloc
        self.public_host, self.public_port = _host_and_port(public.netloc, self.default_port)
        self.active = self.public_host in LOOPBACK_HOSTS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.active and scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            headers = Headers(scope=scope)
            host = headers.get("host", "")
            if host != self.public_netloc and "text/html" in headers.get("accept", "") and \
                    _host_and_port(host, self.default_port) in {(name, self.public_port) for name in LOOPBACK_HOSTS}:
                query = scope.get("query_string", b"").decode("latin-1")
                target = self.public_url + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
                await RedirectResponse(target + (f"?{query}" if query else ""), status_code=307)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def redirect_loopback_browsers(public_url: str) -> Callable[[ASGIApp], ASGIApp]:
    """The transform `rx.App(api_transformer=…)` applies to the whole app (pages, websocket and API)."""
    return lambda app: LoopbackToPublicUrl(app, public_url)
