"""The API docs render with nothing but LockN itself: every request off this machine is blocked (and none is made)."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import expect

from qa.conftest import VIEWPORTS, save_screenshot

LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def test_swagger_ui_renders_offline(browser, base_url: str) -> None:
    context = browser.new_context(viewport=VIEWPORTS["desktop"], base_url=base_url)
    blocked: list[str] = []

    def only_loopback(route) -> None:  # type: ignore[no-untyped-def]
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto("/api/docs")
        expect(page.locator(".opblock").first).to_be_visible(timeout=20000)
        expect(page.get_by_text("/v1/audio/speech").first).to_be_visible()
        save_screenshot(page, "api-docs")
    finally:
        context.close()
    assert blocked == [], f"the docs asked for outside resources: {blocked}"
    assert errors == []
