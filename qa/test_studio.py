"""The Voice Studio in a real Chromium against the running app, worker and Piper engine."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import soundfile as sf
import srt
from playwright.sync_api import Page, expect

from qa.conftest import VIEWPORTS, save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("dev_identity_provider")]
LONG_TEXT = " ".join(f"This is sentence {n} of a longer passage, so the progress bar has time to move."
                     for n in range(1, 16))


def open_studio(open_page, viewport: str = "desktop", email: str = "studio@example.test") -> Page:
    page = open_page("/studio", viewport)
    page.wait_for_url(re.compile(r".*/dev-idp/authorize.*"), timeout=20000)
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/studio/?$"), timeout=20000)
    expect(page.get_by_test_id("studio")).to_be_visible(timeout=20000)
    expect(page.get_by_test_id("voice-card").first).to_be_visible(timeout=20000)
    if viewport == "desktop":  # the navbar knows who is signed in (no "Sign in" button on a private page)
        expect(page.get_by_test_id("nav-sign-out").last).to_be_visible()
    return page


def generate(page: Page, text: str, fmt: str) -> list[str]:
    """Type, pick the format, generate; returns the progress labels seen while it ran."""
    page.get_by_test_id("studio-text").fill(text)
    page.get_by_role("combobox").filter(has_text=re.compile(r"^(wav|mp3|flac|opus)$")).click()
    page.get_by_role("option", name=fmt, exact=True).click()
    player = page.get_by_test_id("player")
    previous = player.get_attribute("src") if player.count() else None
    page.get_by_test_id("generate").click()
    labels: list[str] = []
    for _ in range(1200):
        label = page.get_by_test_id("progress-label")
        if label.count():
            text_now = label.inner_text()
            if not labels or labels[-1] != text_now:
                labels.append(text_now)
        if player.count() and player.get_attribute("src") != previous:
            break
        page.wait_for_timeout(50)
    expect(player).not_to_have_attribute("src", previous or "", timeout=60000)
    return labels


def audio_duration(page: Page) -> float:
    return page.evaluate("""async () => {
        const a = document.querySelector('[data-testid=player]');
        await new Promise(r => { a.onloadedmetadata = r; a.load(); });
        return a.duration; }""")


ACTIVE_WORD = """() => { const words = [...document.querySelectorAll('#studio-words span[data-start]')];
    const i = words.findIndex(w => w.dataset.active === 'true');
    const a = document.querySelector('audio[data-testid=player]');
    return i < 0 ? null : {index: i, start: +words[i].dataset.start, end: +words[i].dataset.end, t: a.currentTime}; }"""


def assert_words_follow_the_player(page: Page) -> None:
    """While the player plays, the word being spoken is highlighted, and the highlight moves on with the audio."""
    expect(page.get_by_test_id("spoken-word").first).to_be_visible()
    page.wait_for_function(f"() => ({ACTIVE_WORD})() !== null", timeout=10000)
    first = page.evaluate(ACTIVE_WORD)
    assert first["start"] - 0.1 <= first["t"] <= first["end"] + 0.5, first  # the word under the player's clock
    page.wait_for_function(f"() => {{ const w = ({ACTIVE_WORD})(); return w !== null && w.index > {first['index']}; }}",
                           timeout=10000)


def test_generate_wav_and_mp3_with_progress_player_and_download(open_page) -> None:
    page = open_studio(open_page)
    labels = generate(page, LONG_TEXT, "wav")
    assert any(re.fullmatch(r"speaking sentence ([2-9]|1[0-5]) of 15", label) for label in labels), labels
    assert audio_duration(page) > 20
    download = page.request.get(page.get_by_test_id("download").get_attribute("href"))
    assert download.status == 200 and download.headers["content-type"] == "audio/wav"
    samples, rate = sf.read(io.BytesIO(download.body()))
    assert len(samples) / rate > 20

    generate(page, "A short one, in MP3.", "mp3")
    assert audio_duration(page) > 0.5
    captions = page.request.get(page.get_by_test_id("captions-srt").get_attribute("href"))
    assert captions.status == 200
    cues = list(srt.parse(captions.text()))  # sentence cues: the one sentence, ending with the audio
    assert [cue.content for cue in cues] == ["A short one, in MP3."]
    assert abs(cues[-1].end.total_seconds() - audio_duration(page)) < 0.1
    mp3 = page.request.get(page.get_by_test_id("download").get_attribute("href"))
    assert mp3.headers["content-type"] == "audio/mpeg" and len(mp3.body()) > 1000

    rows = page.get_by_test_id("history-row")
    expect(rows).to_have_count(2)
    rows.nth(1).get_by_test_id("replay").click()
    expect(page.get_by_test_id("player")).to_have_attribute("src", re.compile(r"/api/voice/jobs/job_.*/audio"))
    page.wait_for_function("() => { const a = document.querySelector('audio[data-testid=player]');"
                           " return a && !a.paused && a.currentTime > 0; }", timeout=15000)  # Replay plays
    assert_words_follow_the_player(page)
    expect(page.get_by_test_id("progress-label")).to_have_text("done: 15 sentences spoken")
    expect(page.get_by_test_id("voice-select")).to_have_text("Joe (Piper, en-US, medium)")  # names, not ids
    assert audio_duration(page) > 20

    rows.nth(0).get_by_test_id("delete-generation").click()  # asks first; keeping it keeps it
    expect(page.get_by_role("alertdialog")).to_contain_text("Delete this generation?")
    page.get_by_role("button", name="Keep it").click()
    expect(rows).to_have_count(2)
    rows.nth(0).get_by_test_id("delete-generation").click()
    page.get_by_test_id("confirm-delete").click()
    expect(rows).to_have_count(1)

    page.get_by_placeholder("Search voices").fill("klingon")
    expect(page.get_by_test_id("no-voice-match")).to_contain_text("No voice matches")
    assert page.console_errors == []


def piper_clip(seconds_of_text: str) -> bytes:
    from workers.engines.piper import PiperEngine

    engine = PiperEngine()
    engine.load()
    pcm = np.concatenate(list(engine.synthesize(seconds_of_text, "en_US-joe-medium")))
    buffer = io.BytesIO()
    sf.write(buffer, pcm, engine.describe().sample_rate, format="WAV")
    return buffer.getvalue()


def drop(page: Page, name: str, data: bytes, mime: str, zone: str = "clone-drop") -> None:
    page.get_by_test_id(zone).locator("input[type=file]").set_input_files(
        {"name": name, "mimeType": mime, "buffer": data})


def test_clone_a_voice_and_refusals(open_page, tmp_path) -> None:
    page = open_studio(open_page, email="cloner@example.test")
    transcript = ("My voice is being recorded for LockN today. I speak clearly and at an even pace, so that "
                  "the clone sounds just like me. This recording lasts about fifteen seconds in total, "
                  "which is enough for a good clone.")
    clip = piper_clip(transcript)
    seconds = sf.info(io.BytesIO(clip)).duration
    assert 10 < seconds < 30, seconds

    # Each drop is decoded and checked server-side: allow for a busy CI machine (20 s, not the default 5 s).
    drop(page, "short.wav", piper_clip("Too short to clone."), "audio/wav")
    expect(page.get_by_test_id("clone-error")).to_contain_text("record 10–30 s", timeout=20000)
    drop(page, "notes.txt", b"this is not audio", "text/plain")
    expect(page.get_by_test_id("clone-error")).to_contain_text("not audio", timeout=20000)
    # A refused drop also sends an empty upload over HTTP; it once landed last and wiped the message.
    page.wait_for_timeout(1000)
    expect(page.get_by_test_id("clone-error")).to_contain_text("not audio", timeout=100)

    drop(page, "me.wav", clip, "audio/wav")
    expect(page.get_by_test_id("clip-info")).to_contain_text("s of speech", timeout=20000)
    expect(page.get_by_test_id("waveform").locator("div")).to_have_count(60)
    page.get_by_placeholder("Voice name").fill("My clone")
    page.get_by_placeholder("Transcript of the recording").fill(transcript)
    page.get_by_test_id("create-voice").click()
    expect(page.get_by_test_id("clone-notice")).to_contain_text("needs a cloning engine", timeout=20000)
    expect(page.locator("[data-testid=voice-card][data-kind=cloned]")).to_have_count(1)
    assert page.console_errors == []


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_studio_screenshots_idle_and_generating(open_page, viewport: str) -> None:
    page = open_studio(open_page, viewport, email=f"shots-{viewport}@example.test")
    save_screenshot(page, f"studio-{viewport}-idle")
    page.get_by_test_id("studio-text").fill(LONG_TEXT)
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("progress")).to_be_visible(timeout=20000)
    page.wait_for_timeout(300)
    save_screenshot(page, f"studio-{viewport}-generating")
    expect(page.get_by_test_id("player")).to_be_attached(timeout=60000)
    expect(page.get_by_test_id("history-row")).to_have_count(1)
    save_screenshot(page, f"studio-{viewport}-done")
    assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0


def test_batch_tab_runs_a_file_and_downloads_its_zip(open_page) -> None:
    """A CSV of three lines (one with an id): refused with the line named when a voice is unknown; otherwise
    progress to completed, and a zip with one file per line and the manifest."""
    import json
    import zipfile

    page = open_studio(open_page)
    page.get_by_test_id("batch-tab").click()
    drop(page, "bad.csv", b"text,voice\nHello,nobody\n", "text/csv", zone="batch-drop")
    expect(page.get_by_test_id("batch-error")).to_contain_text("line 1", timeout=20000)
    lines = "id,text,voice,format\nwelcome,Welcome to the batch.,en_US-joe-medium,mp3\n,Line two.,en_US-joe-medium,\n" \
            ",Line three.,en_US-joe-medium,wav\n"
    drop(page, "lines.csv", lines.encode(), "text/csv", zone="batch-drop")
    expect(page.get_by_test_id("preview-lines")).to_have_text("3", timeout=20000)  # previewed; nothing started
    page.get_by_test_id("batch-start").click()
    expect(page.get_by_test_id("batch-label")).to_contain_text("completed · 3 done, 0 failed of 3", timeout=60000)
    archive = page.request.get(page.get_by_test_id("batch-download").get_attribute("href"))
    assert archive.status == 200 and archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.body())) as zipped:
        manifest = json.loads(zipped.read("manifest.json"))
        assert [line["id"] for line in manifest["lines"]] == ["welcome", "line-0002", "line-0003"]
        assert {"welcome.mp3", "line-0002.wav", "line-0003.wav"} <= set(zipped.namelist())
    save_screenshot(page, "studio-batch")
    assert page.console_errors == []
