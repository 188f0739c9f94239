"""Actions that cannot be undone ask first, name their object and say what is lost (issue 29, item 1).

One dialog for all of them (components/confirm.py): revoking a key, deleting a cloned voice, deleting a webhook
endpoint (its delivery log goes too) and rotating a webhook secret (receivers' checks break at once). Keeping
changes nothing; confirming does it. At both widths.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from qa.conftest import VIEWPORTS, external_target, save_screenshot
from qa.test_dashboard import add_webhook, create_key, key_row_id, sign_in
from qa.test_studio import drop, open_studio, piper_clip

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("dev_identity_provider")]
TRANSCRIPT = ("My voice is being recorded for LockN today. I speak clearly and at an even pace, so that "
              "the clone sounds just like me. This recording lasts about fifteen seconds in total, "
              "which is enough for a good clone.")


def ask(page: Page, trigger) -> "Locator":  # noqa: F821
    """Click `trigger`; the confirmation dialog it opens."""
    trigger.click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_be_visible()
    return dialog


def keep(page: Page) -> None:
    page.get_by_test_id("confirm-keep").click()
    expect(page.get_by_role("alertdialog")).to_have_count(0)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_key_and_webhook_actions_ask_and_name_their_object(open_page, viewport: str) -> None:
    from tests.webhook_receiver import Receiver

    if external_target():
        pytest.skip("the deployment under test cannot reach a receiver on this machine's loopback")
    page = open_page("/dashboard", viewport)
    sign_in(page, f"ask-{viewport}@example.test")
    create_key(page, "billing worker")
    row_id = key_row_id(viewport)
    row = page.locator(f"[data-testid={row_id}][data-status=active]").first
    dialog = ask(page, row.get_by_test_id("revoke"))
    expect(dialog).to_contain_text("Revoke key “billing worker” (lk_live_")
    expect(dialog).to_contain_text("fails at once")
    keep(page)
    expect(page.locator(f"[data-testid={row_id}][data-status=active]")).to_have_count(1)

    receiver = Receiver()
    try:
        panel, secret, first_secret = add_webhook(page, receiver.url)

        dialog = ask(page, panel.get_by_test_id("webhook-rotate"))
        expect(dialog).to_contain_text(f"Rotate the signing secret of {receiver.url}?")
        expect(dialog).to_contain_text("signature checks reject every event")
        save_screenshot(page, f"ask-rotate-webhook-{viewport}")
        keep(page)
        expect(secret).to_have_text(first_secret)
        ask(page, panel.get_by_test_id("webhook-rotate"))
        page.get_by_test_id("confirm-webhook-rotate").click()
        expect(secret).not_to_have_text(first_secret, timeout=20000)

        dialog = ask(page, panel.get_by_test_id("webhook-delete"))
        expect(dialog).to_contain_text(f"Delete the endpoint {receiver.url}?")
        expect(dialog).to_contain_text("its delivery log goes with it")
        save_screenshot(page, f"ask-delete-webhook-{viewport}")
        keep(page)
        expect(panel.get_by_test_id("webhook-endpoint")).to_have_count(1)
        ask(page, panel.get_by_test_id("webhook-delete"))
        page.get_by_test_id("confirm-webhook-delete").click()
        expect(panel.get_by_test_id("webhook-endpoint")).to_have_count(0, timeout=20000)
    finally:
        receiver.server.shutdown()
    assert page.console_errors == []


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_deleting_a_cloned_voice_asks_and_names_it(open_page, viewport: str) -> None:
    page = open_studio(open_page, viewport, email=f"ask-voice-{viewport}@example.test")
    drop(page, "me.wav", piper_clip(TRANSCRIPT), "audio/wav")
    expect(page.get_by_test_id("clip-info")).to_contain_text("s of speech", timeout=20000)
    page.get_by_placeholder("Voice name").fill("Grace, studio mic")
    page.get_by_placeholder("Transcript of the recording").fill(TRANSCRIPT)
    page.get_by_test_id("create-voice").click()
    cloned = page.locator("[data-testid=voice-card][data-kind=cloned]")
    expect(cloned).to_have_count(1, timeout=20000)

    dialog = ask(page, cloned.get_by_test_id("delete-voice"))
    expect(dialog).to_contain_text("Delete the voice “Grace, studio mic”?")
    expect(dialog).to_contain_text("deleted for good")
    save_screenshot(page, f"ask-delete-voice-{viewport}")
    keep(page)
    expect(cloned).to_have_count(1)
    ask(page, cloned.get_by_test_id("delete-voice"))
    page.get_by_test_id("confirm-delete-voice").click()
    expect(cloned).to_have_count(0, timeout=20000)
    assert page.console_errors == []
