"""The dashboard's sections have their own addresses and a key has its own page (issue 29, item 4). At both
widths, with a screenshot of every section."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from qa.conftest import VIEWPORTS, save_screenshot
from qa.test_dashboard import create_key, key_row_id, reveal_new_key, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("dev_identity_provider")]
#: slug → a test id only that section shows (the account card has its sign-out button).
SECTIONS = {"keys": "create-key", "usage": "usage-panel", "requests": "logs-panel", "activity": "activity-panel",
            "webhooks": "webhooks-panel", "status": "service-card", "account": "sign-out"}


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_each_section_has_its_own_address(open_page, viewport: str) -> None:
    page = open_page("/dashboard", viewport)
    sign_in(page, f"sections-{viewport}@example.test")
    for slug, shown in SECTIONS.items():
        page.goto(f"/dashboard/{slug}")
        expect(page.get_by_test_id("dashboard")).to_be_visible(timeout=20000)
        expect(page.get_by_test_id(shown).first).to_be_visible(timeout=15000)
        for other, hidden in SECTIONS.items():
            if other != slug:
                expect(page.get_by_test_id(hidden)).to_have_count(0)
        expect(page.get_by_test_id(f"section-{slug}")).to_have_attribute("aria-current", "page")
        assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0, slug
        save_screenshot(page, f"dashboard-{viewport}-section-{slug}")
    page.get_by_test_id("section-usage").click()  # the bar's links lead there too
    page.wait_for_url(re.compile(r".*/dashboard/usage$"))
    expect(page.get_by_test_id("usage-panel")).to_be_visible()
    assert page.console_errors == []


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_key_page_shows_that_keys_requests_and_rotation(open_page, base_url: str, viewport: str) -> None:
    page = open_page("/dashboard", viewport)
    sign_in(page, f"keypage-{viewport}@example.test")
    keys = {name: create_key(page, name) for name in ("first", "second")}
    first = {"Authorization": f"Bearer {keys['first']}"}
    second = {"Authorization": f"Bearer {keys['second']}"}
    assert httpx.get(f"{base_url}/v1/models", headers=first, timeout=10).status_code == 200
    assert httpx.get(f"{base_url}/api/voice/jobs/job_nowhere", headers=second, timeout=10).status_code == 404

    row_id = key_row_id(viewport)
    first_row = page.locator(f"[data-testid={row_id}]").filter(has_text="first")
    key_id = first_row.get_attribute("data-key-id")
    first_row.get_by_test_id("rotate").click()
    page.get_by_test_id("rotate-1-hour").click()
    reveal_new_key(page)

    first_row = page.locator(f"[data-testid={row_id}][data-key-id='{key_id}']")  # two rows are "first" now
    first_row.get_by_test_id("key-link").click()
    page.wait_for_url(re.compile(rf".*/dashboard/keys/{key_id}$"), timeout=20000)
    expect(page.get_by_test_id("key-page")).to_be_visible(timeout=20000)
    expect(page.get_by_test_id("key-page-panel")).to_contain_text("Key first")
    expect(page.get_by_test_id("key-rotation")).to_contain_text(re.compile(r"replaced by lk_live_\w+"))
    rows = page.get_by_test_id("log-row")
    expect(rows).to_have_count(1, timeout=20000)  # the first key's request only, not the second's 404
    expect(rows.first).to_contain_text("GET /v1/models")
    expect(page.get_by_test_id("usage-panel")).to_be_visible()
    save_screenshot(page, f"dashboard-{viewport}-key-page")
    page.goto("/dashboard/keys/key_not_mine")
    expect(page.get_by_test_id("key-missing")).to_be_visible(timeout=20000)
    expect(page.get_by_test_id("log-row")).to_have_count(0)
    assert page.console_errors == []
