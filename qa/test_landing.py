"""The landing page as a visitor sees it, in a real Chromium, on a phone and a desktop."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from qa.conftest import VIEWPORTS, save_screenshot

pytestmark = pytest.mark.browser

FEATURE_TITLES = {"Voice Studio", "API keys", "OpenAI-compatible API", "Voice cloning", "GPU worker queue"}


@pytest.mark.smoke
@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_landing_page_renders_without_errors_or_horizontal_scroll(open_page, viewport: str) -> None:
    page = open_page("/", viewport)
    assert "LockN" in page.title()
    hero = page.get_by_test_id("hero")
    assert hero.get_by_role("heading", level=1).inner_text() == "Voice AI you run yourself."
    cards = page.get_by_test_id("feature-card")
    assert cards.count() == len(FEATURE_TITLES)
    assert {cards.nth(i).get_by_role("heading").inner_text() for i in range(cards.count())} == FEATURE_TITLES
    # The statuses come from the server; wait until every card has its answer.
    page.wait_for_function("() => document.querySelectorAll('[data-status=checking]').length === 0", timeout=15000)
    statuses = page.locator("[data-testid=feature-card] [data-status]").evaluate_all("els => els.map(e => e.dataset.status)")
    assert set(statuses) <= {"live", "soon"} and len(statuses) == len(FEATURE_TITLES)
    assert page.get_by_test_id("code-example").get_by_text("/v1/audio/speech").count() >= 1
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {viewport} width"
    save_screenshot(page, f"landing-{viewport}")
    assert page.console_errors == []


def test_navbar_links_resolve(open_page, base_url: str) -> None:
    page = open_page("/")
    nav = page.locator("nav")
    hrefs = {nav.get_by_role("link", name=name).first.get_attribute("href")
             for name in ("Voice Studio", "Dashboard", "API docs")}
    hrefs.add(nav.get_by_role("link", name="Sign in").first.get_attribute("href"))
    assert hrefs == {"/studio", "/dashboard", "/api/docs", "/auth/login?next=/dashboard"}
    for href in hrefs:
        response = httpx.get(base_url + href, timeout=10, follow_redirects=True)
        assert response.status_code == 200, f"{href} answered {response.status_code}"


@pytest.mark.usefixtures("dev_identity_provider")
def test_clicking_through_the_navbar(open_page) -> None:
    page = open_page("/")
    page.locator("nav").get_by_role("link", name="Voice Studio").first.click()
    page.wait_for_url("**/dev-idp/authorize**")  # the Studio is private: sign-in first
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to LockN")
    page.goto("/")
    page.locator("nav").get_by_role("link", name="API docs").first.click()
    page.wait_for_url("**/api/docs")
    assert "LockN API" in page.title()


def test_phone_menu_opens_with_every_link(open_page) -> None:
    page = open_page("/", "mobile")
    page.get_by_role("button", name="Menu").click()
    items = page.get_by_role("menuitem")
    assert {items.nth(i).inner_text() for i in range(items.count())} == {"Voice Studio", "Dashboard", "API docs"}
