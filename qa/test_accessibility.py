"""Every page can be used without a mouse and read by a screen reader, and logs no console error (issue 29,
item 5): every control has a name (icon buttons an aria-label), Tab reaches the main action with a visible focus
ring, Escape closes dialogs. At both widths."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from qa.conftest import VIEWPORTS
from qa.test_dashboard import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("dev_identity_provider")]

#: Visible controls with no accessible name: no text, aria-label, aria-labelledby, title, placeholder or <label>.
UNNAMED = """() => [...document.querySelectorAll(
    'button, a[href], [role=button], [role=checkbox], [role=slider], [role=combobox], [role=tab], input, textarea')]
  .filter(e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden' && e.type !== 'hidden'
               && !e.closest('[aria-hidden=true]')
               // a drop zone's own <input type=file> is out of the tab order: the zone, with its words, is the control
               && !(e.type === 'file' && e.tabIndex === -1))
  .filter(e => {
    const own = (e.getAttribute('aria-label') || e.getAttribute('title') || e.innerText || e.value
                 || e.getAttribute('placeholder') || '').trim();
    const by = e.getAttribute('aria-labelledby');
    const labelled = by && by.split(' ').some(id => (document.getElementById(id)?.innerText || '').trim());
    const forLabel = e.id && document.querySelector(`label[for="${CSS.escape(e.id)}"]`);
    return !own && !labelled && !forLabel && !e.closest('label');
  })
  .map(e => e.outerHTML.slice(0, 200))"""


def unnamed_controls(page: Page) -> str:
    """The unnamed controls, one a line ("" when none)."""
    return "\n".join(page.evaluate(UNNAMED))


def tab_to(page: Page, test_id: str, most: int = 60) -> dict:
    """Press Tab until the element with `test_id` has focus; its focus ring as the browser draws it."""
    page.locator("body").focus()
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => document.activeElement?.dataset?.testid === {test_id!r}"):
            # Radix draws a field's ring on its wrapper (:focus-within): the element and two parents, focused and
            # then blurred (the ring is what changes), then focus goes back.
            return page.evaluate("""() => { const el = document.activeElement;
                const look = () => { const rings = []; let e = el;
                    for (let i = 0; e && i < 3; i++, e = e.parentElement) { const s = getComputedStyle(e);
                        rings.push(s.outlineStyle + ' ' + s.outlineWidth + ' ' + s.outlineColor + ' ' + s.boxShadow); }
                    return rings.join(' | '); };
                const focused = look(); el.blur(); const blurred = look(); el.focus({focusVisible: true});
                return {focused, blurred}; }""")
    raise AssertionError(f"Tab never reached {test_id} in {most} presses")


def has_ring(styles: dict) -> bool:
    """Whether focus visibly changes the element or the wrapper that draws its ring (an outline or a shadow)."""
    return styles["focused"] != styles["blurred"]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_landing_studio_and_dashboard_are_named_keyboard_reachable_and_quiet(open_page, viewport: str) -> None:
    landing = open_page("/", viewport)
    landing.wait_for_function("() => document.querySelectorAll('[data-status=checking]').length === 0")
    assert unnamed_controls(landing) == ""
    assert landing.console_errors == []

    page = open_page("/dashboard", viewport)
    sign_in(page, f"a11y-{viewport}@example.test")
    expect(page.get_by_test_id("service-card").first).to_be_visible(timeout=15000)
    assert unnamed_controls(page) == ""
    assert has_ring(tab_to(page, "create-key"))
    page.keyboard.press("Enter")  # the create dialog opens from the keyboard, and Escape closes it
    expect(page.get_by_role("dialog")).to_be_visible()
    assert unnamed_controls(page) == ""
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)

    page.goto("/studio")
    expect(page.get_by_test_id("voice-card").first).to_be_visible(timeout=20000)
    expect(page.get_by_test_id("studio-readiness")).to_have_attribute("data-status", re.compile("ready|warming"),
                                                                      timeout=15000)
    assert unnamed_controls(page) == ""
    assert has_ring(tab_to(page, "studio-text"))
    page.keyboard.type("Typed and generated from the keyboard.")
    assert has_ring(tab_to(page, "generate"))
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("player")).to_be_attached(timeout=60000)
    assert page.console_errors == []
