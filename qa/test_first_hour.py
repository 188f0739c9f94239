"""A newcomer's first hour, as the README tells it, in a real Chromium with every request off this machine
blocked: at `localhost` and at `127.0.0.1`, on a phone and a desktop.

Landing page (every feature card answered), the API docs, sign-in, a first key, the Studio (generate,
hear it, download it; a library sample that leaves History alone; Replay that plays; a delete that asks
first), and the dashboard's usage charts counting in whole numbers. Screenshots of each step are saved as
`first-hour-<address>-<viewport>-<step>.png`.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
from playwright.sync_api import Page, expect

from qa.conftest import CHROMIUM_ARGS, VIEWPORTS, chromium_executable, save_screenshot
from qa.test_api_docs import LOOPBACK
from qa.test_dashboard import reveal_new_key
from qa.test_studio import generate

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("dev_identity_provider")]

PLAYING = "el => !el.paused && el.currentTime > 0"


def wait_playing(page: Page, selector: str) -> None:
    page.wait_for_function(f"() => {{ const el = document.querySelector({selector!r}); return el && ({PLAYING})(el); }}",
                           timeout=20000)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("address", ["localhost", "127.0.0.1"])
def test_first_hour(browser, base_url: str, address: str, viewport: str) -> None:
    start = base_url.replace("localhost", address)
    context = browser.new_context(viewport=VIEWPORTS[viewport])
    blocked: list[str] = []
    context.route("**/*", lambda route: route.continue_() if urlsplit(route.request.url).hostname in LOOPBACK
                  else (blocked.append(route.request.url), route.abort()))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda response: response.status >= 400 and errors.append(f"{response.status} {response.url}"))

    def shot(step: str) -> None:
        save_screenshot(page, f"first-hour-{address}-{viewport}-{step}")

    try:
        # The landing page, at whichever loopback name was typed: its cards all get an answer.
        page.goto(start + "/", wait_until="networkidle")
        assert urlsplit(page.url).hostname == "localhost", "sent to the address the app was started for"
        page.wait_for_function("() => document.querySelectorAll('[data-status=checking]').length === 0",
                               timeout=15000)
        expect(page.locator("[data-testid=feature-card] [data-status=live]").first).to_be_visible()
        shot("landing")

        page.goto(start + "/api/docs")
        expect(page.locator(".opblock").first).to_be_visible(timeout=20000)
        shot("docs")

        # Sign in on the way to the dashboard, and make a first key.
        page.goto(start + "/dashboard")
        page.wait_for_url(re.compile(r".*/dev-idp/authorize.*"), timeout=20000)
        page.get_by_label("Email").fill(f"newcomer-{address}-{viewport}@example.test")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("dashboard")).to_be_visible(timeout=20000)
        page.get_by_test_id("create-key").click()
        page.get_by_placeholder("my app").fill("first key")
        page.get_by_test_id("submit-key").click()
        assert re.fullmatch(r"lk_live_[0-9A-Za-z]{32}", reveal_new_key(page))

        # The Studio: generate, hear it, download it.
        page.goto(start + "/studio")
        expect(page.get_by_test_id("voice-card").first).to_be_visible(timeout=20000)
        generate(page, "Hello! This is my first hour with LockN.", "mp3")
        wait_playing(page, "audio[data-testid=player]")
        download = page.request.get(urljoin(page.url, page.get_by_test_id("download").get_attribute("href")))
        assert download.status == 200 and download.headers["content-type"] == "audio/mpeg"
        history = page.get_by_test_id("history-row")
        expect(history).to_have_count(1)
        shot("studio")

        # A library sample plays, and is nobody's history.
        page.get_by_test_id("voice-card").first.locator("audio").evaluate("el => el.play()")
        wait_playing(page, "[data-testid=voice-card] audio")
        page.reload()
        expect(page.get_by_test_id("history-row")).to_have_count(1, timeout=20000)

        # Replay plays; deleting asks first.
        page.get_by_test_id("history-row").first.get_by_test_id("replay").click()
        wait_playing(page, "audio[data-testid=player]")
        page.get_by_test_id("history-row").first.get_by_test_id("delete-generation").click()
        expect(page.get_by_role("alertdialog")).to_contain_text("Delete this generation?")
        page.get_by_role("button", name="Keep it").click()
        expect(page.get_by_test_id("history-row")).to_have_count(1)

        # The dashboard counts the Studio's generation, in whole numbers.
        page.goto(start + "/dashboard")
        expect(page.locator("[data-testid=usage-panel] .recharts-bar-rectangle").first).to_be_attached(timeout=20000)
        ticks = page.locator("[data-testid=usage-panel] .recharts-cartesian-axis-tick-value")
        expect(ticks.first).to_be_attached()
        counts = [text.strip() for text in ticks.all_text_contents() if not re.fullmatch(r"\d\d-\d\d", text.strip())]
        assert counts and all(re.fullmatch(r"\d[\d,]*", count) for count in counts), counts  # not 0.5 requests
        if viewport == "mobile":  # the keys are cards a phone can show whole, actions included
            expect(page.get_by_test_id("key-card").get_by_test_id("rotate")).to_be_visible()
        shot("dashboard")
        assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0

        page.get_by_role("button", name="Sign out").first.click()
        page.wait_for_url(re.compile(r"^http://localhost:\d+/$"), timeout=20000)  # the landing page's own URL
        expect(page.get_by_test_id("hero")).to_be_visible()
    finally:
        context.close()
    assert blocked == [], f"asked for outside resources: {blocked}"
    assert errors == []


def test_a_page_that_cannot_reach_its_server_says_why_and_where_to_go(browser, base_url: str) -> None:
    """Opened at a name LockN was not started for (here `lockn.test`, resolved to this machine), the pages load
    but their websocket is refused (its origin is not LOCKN_PUBLIC_URL's): the page says so in words and links
    the address that works, instead of a bare "cannot connect"."""
    port = urlsplit(base_url).port
    elsewhere = browser.browser_type.launch(executable_path=chromium_executable(),
                                            args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP lockn.test 127.0.0.1"])
    try:
        page = elsewhere.new_page(viewport=VIEWPORTS["mobile"])
        page.goto(f"http://lockn.test:{port}/")
        help_text = page.get_by_test_id("connection-help")
        expect(help_text).to_contain_text("cannot reach LockN's server", timeout=30000)
        expect(help_text.get_by_role("link")).to_have_attribute("href", base_url)
        save_screenshot(page, "connection-help-mobile")
    finally:
        elsewhere.close()
