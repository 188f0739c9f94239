"""The Studio says what is going on in words (issue 29, item 3): progress as "waiting for a worker" / "speaking
sentence 3 of 7", a failed History row says why, the chosen voice card shows it is chosen, the Batch tab refuses a
.txt in words and previews a CSV (lines, voices, characters, estimated speech) before anything starts. At both
widths, with screenshots of the Studio generating, done and in error."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from qa.conftest import VIEWPORTS, save_screenshot
from qa.test_studio import LONG_TEXT, drop, open_studio

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("dev_identity_provider")]
JOE = "en_US-joe-medium"


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_progress_in_words_and_a_failed_row_says_why(open_page, viewport: str) -> None:
    page = open_studio(open_page, viewport, email=f"words-{viewport}@example.test")
    chosen = page.locator("[data-testid=voice-card][data-chosen=true]")
    expect(chosen).to_have_count(1)
    expect(chosen).to_have_attribute("data-voice", JOE)
    expect(chosen.get_by_test_id("use-voice")).to_have_text("Chosen")
    expect(chosen.get_by_test_id("use-voice")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("studio-instructions")).to_be_disabled()  # shown, greyed, and saying why
    expect(page.get_by_test_id("instructions-hint")).to_contain_text("This voice doesn't follow instructions")

    page.get_by_test_id("studio-text").fill(LONG_TEXT)
    page.get_by_test_id("generate").click()
    label = page.get_by_test_id("progress-label")
    expect(label).to_have_text(re.compile(r"^(waiting for a worker|speaking sentence \d+ of 15)$"), timeout=20000)
    expect(label).to_have_text(re.compile(r"^speaking sentence ([2-9]|1[0-5]) of 15$"), timeout=30000)
    save_screenshot(page, f"studio-{viewport}-words-generating")
    expect(label).to_have_text("done: 15 sentences spoken", timeout=60000)
    save_screenshot(page, f"studio-{viewport}-words-done")

    page.get_by_test_id("studio-text").fill(LONG_TEXT + " Once more, to be cancelled.")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("cancel")).to_be_visible(timeout=20000)
    page.get_by_test_id("cancel").click()
    failed = page.locator("[data-testid=history-row][data-status=failed]")
    expect(failed).to_have_count(1, timeout=30000)
    expect(failed.get_by_test_id("history-error")).to_contain_text("Failed: ")
    expect(failed.get_by_test_id("history-error")).to_have_text("Failed: Cancelled.")
    expect(page.get_by_test_id("studio-error")).to_contain_text("Cancelled")
    save_screenshot(page, f"studio-{viewport}-words-error")
    assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0
    assert page.console_errors == []


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_batch_refuses_a_txt_and_previews_a_csv(open_page, viewport: str) -> None:
    page = open_studio(open_page, viewport, email=f"preview-{viewport}@example.test")
    page.get_by_test_id("batch-tab").click()
    drop(page, "notes.txt", b"Hello there, this is just text.", "text/plain", zone="batch-drop")
    expect(page.get_by_test_id("batch-error")).to_contain_text("is not a batch file: drop a .csv",
                                                               timeout=20000)
    page.wait_for_timeout(1000)  # the empty upload a refused drop also sends must not wipe the message
    expect(page.get_by_test_id("batch-error")).to_contain_text("is not a batch file", timeout=100)

    text = "id,text,voice\nhello,Hello there.,{v}\n,A second line to speak.,{v}\n,And the third line.,{v}\n"
    drop(page, "lines.csv", text.format(v=JOE).encode(), "text/csv", zone="batch-drop")
    preview = page.get_by_test_id("batch-preview")
    expect(page.get_by_test_id("preview-lines")).to_have_text("3", timeout=20000)
    expect(page.get_by_test_id("preview-voices")).to_have_text(JOE)
    chars = len("Hello there.") + len("A second line to speak.") + len("And the third line.")
    expect(page.get_by_test_id("preview-characters")).to_have_text(str(chars))
    expect(page.get_by_test_id("preview-speech")).to_have_text(re.compile(r"^about \d+ s$"))
    expect(page.get_by_test_id("batch-error")).to_have_count(0)
    expect(page.get_by_test_id("batch-label")).to_have_count(0)  # nothing started yet
    save_screenshot(page, f"studio-{viewport}-batch-preview")
    page.get_by_test_id("batch-start").click()
    expect(preview).to_have_count(0)
    expect(page.get_by_test_id("batch-label")).to_contain_text("completed · 3 done, 0 failed of 3", timeout=60000)
    assert page.console_errors == []


def test_speed_control_and_label_agree_after_a_reload_and_replay_restores_the_speed(open_page) -> None:
    page = open_studio(open_page, email="speed@example.test")
    speed, label = page.get_by_test_id("speed"), page.get_by_test_id("speed-label")
    speed.fill("1.5")
    expect(label).to_have_text("1.5×")
    page.get_by_test_id("studio-text").fill("Spoken a little faster.")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("history-row")).to_have_count(1, timeout=60000)
    page.reload()
    expect(page.get_by_test_id("studio")).to_be_visible(timeout=20000)
    expect(label).to_have_text(re.compile(r"^[\d.]+×$"))
    assert f"{float(speed.input_value()):g}×" == label.inner_text(), "the control and its label agree"
    speed.fill("1")
    expect(label).to_have_text("1×")
    page.get_by_test_id("history-row").first.get_by_test_id("replay").click()
    expect(label).to_have_text("1.5×")
    expect(speed).to_have_value("1.5")
    assert page.console_errors == []
