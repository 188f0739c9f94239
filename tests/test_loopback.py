"""Every loopback spelling of the bound port opens the app: browsers are sent to the public URL the pages
were built for; API clients are answered where they asked (issue 17, point 1)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from backend.api.loopback import LoopbackToPublicUrl
from tests.conftest import run_async

BROWSER = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def ask(public_url: str, url: str, headers: dict[str, str] | None = None, method: str = "GET") -> httpx.Response:
    inner = Starlette(routes=[Route("/{path:path}", lambda request: PlainTextResponse("served"),
                                    methods=["GET", "HEAD", "POST"])])
    app = LoopbackToPublicUrl(inner, public_url)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return await client.request(method, url, headers=headers)

    return run_async(call())


@pytest.mark.parametrize("address", ["http://127.0.0.1:3000", "http://[::1]:3000"])
def test_a_browser_on_another_loopback_name_goes_to_the_public_url(address: str) -> None:
    answer = ask("http://localhost:3000", f"{address}/dashboard/keys?tab=usage", BROWSER)
    assert answer.status_code == 307
    assert answer.headers["location"] == "http://localhost:3000/dashboard/keys?tab=usage"


@pytest.mark.parametrize("url, headers, method", [
    ("http://localhost:3000/dashboard", BROWSER, "GET"),      # already the public URL
    ("http://127.0.0.1:3000/v1/models", {"accept": "application/json"}, "GET"),  # an API client
    ("http://127.0.0.1:3000/api/voice/jobs", BROWSER, "POST"),  # never redirect a body
    ("http://127.0.0.1:4000/", BROWSER, "GET"),                # another port is another app
    ("http://192.168.1.20:3000/", BROWSER, "GET"),             # not loopback: the owner's proxy's business
    ("http://127.0.0.1:3000/", {**BROWSER, "host": "127.0.0.1:x"}, "GET"),  # a nonsense Host header
])
def test_everything_else_is_served_where_it_asked(url: str, headers: dict[str, str], method: str) -> None:
    answer = ask("http://localhost:3000", url, headers, method)
    assert (answer.status_code, answer.text) == (200, "served")


def test_a_public_url_that_is_not_loopback_redirects_nobody() -> None:
    answer = ask("https://voice.example.test", "http://127.0.0.1:3000/", BROWSER)
    assert (answer.status_code, answer.text) == (200, "served")
