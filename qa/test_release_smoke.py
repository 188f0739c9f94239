"""The path a person takes through a release, in a real Chromium: sign in, the dashboard, the Voice Studio.

Part of the smoke suite (`make qa`); it needs the development identity provider (it fills in its form),
so against a deployment that signs in through Auth0 it skips and says so.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from qa.conftest import save_screenshot
from qa.test_dashboard import sign_in
from qa.test_studio import audio_duration, generate

pytestmark = [pytest.mark.smoke, pytest.mark.browser]


def test_sign_in_then_dashboard_then_studio(open_page, dev_identity_provider: str) -> None:
    page = open_page("/dashboard")
    sign_in(page, "release-smoke@example.test")
    expect(page.get_by_test_id("service-card").first).to_be_visible()
    expect(page.locator("[data-testid=service-card][data-status=down]")).to_have_count(0, timeout=15000)
    save_screenshot(page, "smoke-dashboard")

    page.locator("nav").get_by_role("link", name="Voice Studio").first.click()
    page.wait_for_url("**/studio")
    expect(page.get_by_test_id("studio")).to_be_visible(timeout=20000)
    expect(page.get_by_test_id("voice-card").first).to_be_visible(timeout=20000)
    generate(page, "The release smoke test speaks.", "wav")
    assert audio_duration(page) > 0.5
    save_screenshot(page, "smoke-studio")
    assert page.console_errors == []
