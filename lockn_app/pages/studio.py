"""The Voice Studio (`/studio`): make a voice say something, hear it, download it, clone your own, speak a batch.

The page's view, whole: the readiness banner, the generate panel with progress and player, the voice library, the
clone zone, batches and the history. Its state is `state/studio.py` (and `state/batch.py` for batches).
"""

from __future__ import annotations

import reflex as rx

from backend.services.jobs.request_rules import MAX_INSTRUCTIONS_CHARS, MAX_TEXT_CHARS
from components.confirm import confirm_action
from components.layout import private_page
from components.dashboard import panel
from state.batch import BatchState
from state.studio import STUDIO_FORMATS, StudioState

AUDIO_TYPES = {"audio/wav": [".wav"], "audio/x-wav": [".wav"], "audio/mpeg": [".mp3"], "audio/flac": [".flac"],
               "audio/ogg": [".ogg", ".oga"]}


def drop_zone(upload_id: str, icon: str, label: str, accept: dict[str, list[str]], on_drop: rx.EventSpec,
              on_drop_rejected: rx.EventHandler, padding: str) -> rx.Component:
    """One file, dropped or chosen: the Studio's two upload zones (a clone's clip, a batch file) look and act alike.
    Its test id is `<upload_id>-drop`."""
    return rx.upload(
        rx.vstack(rx.icon(icon, size=24), rx.text(label, size="2"), align="center", spacing="2"),
        id=upload_id, accept=accept, max_files=1, multiple=False, on_drop=on_drop, on_drop_rejected=on_drop_rejected,
        border=f"2px dashed {rx.color('gray', 7)}", border_radius="10px", padding=padding, width="100%",
        data_testid=f"{upload_id}-drop",
    )


def voice_card(voice: rx.Var[dict[str, str]]) -> rx.Component:
    """A voice of the library; the chosen one is outlined and its button says "Chosen" (aria-pressed)."""
    chosen = StudioState.voice_id == voice["id"]
    return rx.card(
        rx.vstack(
            rx.hstack(rx.text(voice["name"], weight="bold", size="2"), rx.spacer(),
                      rx.badge(voice["kind"], variant="soft",
                               color_scheme=rx.cond(voice["kind"] == "cloned", "violet", "gray")), width="100%"),
            rx.text(voice["engine"] + " · " + voice["language"], size="1", color=rx.color("gray", 11)),
            rx.el.audio(src=voice["sample_url"], controls=True, preload="none", style={"width": "100%",
                                                                                      "height": "32px"}),
            rx.hstack(
                rx.button(rx.cond(chosen, "Chosen", "Use"), size="1", variant=rx.cond(chosen, "solid", "soft"),
                          on_click=StudioState.set_voice(voice["id"]), aria_pressed=rx.cond(chosen, "true", "false"),
                          aria_label="Use the voice " + voice["name"], data_testid="use-voice"),
                rx.cond(voice["kind"] == "cloned",
                        confirm_action("Delete", "Delete the voice “" + voice["name"] + "”?",
                                       "Its reference recording is deleted for good; generations already made with "
                                       "it stay in History.", "Delete voice", StudioState.delete_voice(voice["id"]),
                                       keep="Keep it", trigger_testid="delete-voice",
                                       confirm_testid="confirm-delete-voice")),
                spacing="2"),
            spacing="2", width="100%",
        ),
        data_testid="voice-card", data_voice=voice["id"], data_kind=voice["kind"],
        data_chosen=rx.cond(chosen, "true", "false"),
        style={"outline": rx.cond(chosen, f"2px solid {rx.color('accent', 9)}", "none"), "outline_offset": "-1px"},
    )


def library_panel() -> rx.Component:
    return panel(
        "Voice library",
        rx.input(placeholder="Search voices", value=StudioState.search, on_change=StudioState.set_search,
                 width="100%"),
        rx.cond(StudioState.filtered_voices.length() > 0,
                rx.grid(rx.foreach(StudioState.filtered_voices, voice_card),
                        columns=rx.breakpoints(initial="1", sm="2", md="3"), spacing="3", width="100%"),
                rx.text("No voice matches “" + StudioState.search + "”: try a name or a language such as en-US.",
                        size="2", color=rx.color("gray", 11), data_testid="no-voice-match")),
        rx.cond(StudioState.notice != "", rx.callout(StudioState.notice, icon="info", color_scheme="amber")),
    )


BATCH_TYPES = {"text/csv": [".csv"], "application/x-ndjson": [".jsonl", ".ndjson"], "application/json": [".jsonl"]}


def batch_tab() -> rx.Component:
    """Upload a file of lines, watch the batch, download its zip."""
    return rx.vstack(
        rx.text("A CSV with a header row (text, voice, format, id) or JSON lines ({\"text\": …, \"voice\": …}), "
                "up to 1,000 lines. Each line becomes a file in one zip, named by its id.", size="2",
                color=rx.color("gray", 11)),
        rx.checkbox("Captions (SRT) for every line", checked=BatchState.batch_captions,
                    on_change=BatchState.set_batch_captions),
        drop_zone("batch", "file-spreadsheet", "Drop a .csv or .jsonl file here, or click", BATCH_TYPES,
                  BatchState.upload_batch(rx.upload_files(upload_id="batch")), BatchState.reject_file, "1.25rem"),
        rx.cond(BatchState.batch_error != "", rx.callout(BatchState.batch_error, color_scheme="red",
                                                         icon="triangle_alert", width="100%",
                                                         data_testid="batch-error")),
        rx.cond(BatchState.preview.contains("lines"), batch_preview()),
        rx.cond(BatchState.batch_id != "", rx.vstack(
            rx.progress(value=BatchState.batch_percent, width="100%", data_testid="batch-progress"),
            rx.text(BatchState.batch_status + " · " + BatchState.batch_done.to_string() + " done, "
                    + BatchState.batch_failed.to_string() + " failed of " + BatchState.batch_total.to_string(),
                    size="2", data_testid="batch-label"),
            rx.hstack(
                rx.cond(BatchState.batch_status == "running",
                        rx.button("Cancel the rest", size="1", variant="soft", color_scheme="gray",
                                  on_click=BatchState.cancel_batch, data_testid="batch-cancel"),
                        rx.link(rx.button(rx.icon("download", size=16), "Download zip", variant="soft"),
                                href=BatchState.archive_url, download=True, reload_document=True,
                                data_testid="batch-download")),
                spacing="2"),
            width="100%", spacing="2")),
        width="100%", spacing="3", padding_top="0.75rem",
    )


READINESS = {"ready": ("Ready", "green", "circle_check"), "warming": ("Warming up", "amber", "loader"),
             "down": ("No worker for this voice", "red", "circle_alert"), "checking": ("Checking…", "gray", "loader")}


def readiness_banner() -> rx.Component:
    """The Studio's header line: can the chosen voice be spoken now, and if not why (from the heartbeats,
    refreshed every 3 s)."""
    def line(status: str) -> rx.Component:
        title, color, icon = READINESS[status]
        return rx.callout(rx.text(rx.text.strong(title), rx.cond(StudioState.readiness_reason != "",
                                                               " — " + StudioState.readiness_reason, "")),
                          icon=icon, color_scheme=color, size="1", width="100%")

    return rx.box(
        rx.match(StudioState.readiness, *[(status, line(status)) for status in READINESS], line("checking")),
        rx.moment(interval=3000, on_change=StudioState.check_readiness, display="none"),
        width="100%", data_testid="studio-readiness", data_status=StudioState.readiness, role="status",
    )


def batch_preview() -> rx.Component:
    """What the dropped file would make, before anything starts: Start or Discard."""
    preview = BatchState.preview

    def fact(label: str, key: str) -> rx.Component:
        return rx.data_list.item(rx.data_list.label(label),
                                 rx.data_list.value(preview[key], data_testid=f"preview-{key}"))

    return rx.card(
        rx.vstack(
            rx.text(rx.text.strong(preview["name"]), " is checked and ready to start:", size="2"),
            rx.data_list.root(fact("Lines", "lines"), fact("Voices", "voices"), fact("Characters", "characters"),
                              fact("Estimated speech", "speech"), size="1",
                              orientation=rx.breakpoints(initial="vertical", sm="horizontal")),
            rx.hstack(rx.button("Start batch", on_click=BatchState.start_batch, data_testid="batch-start"),
                      rx.button("Discard", variant="soft", color_scheme="gray", on_click=BatchState.discard_preview,
                                data_testid="batch-discard"), spacing="2"),
            spacing="3", width="100%"),
        width="100%", data_testid="batch-preview",
    )


def generate_panel() -> rx.Component:
    return panel(
        "Generate speech",
        rx.tabs.root(
            rx.tabs.list(rx.tabs.trigger("One text", value="single"),
                         rx.tabs.trigger("Batch", value="batch", data_testid="batch-tab")),
            rx.tabs.content(single_tab(), value="single"),
            rx.tabs.content(batch_tab(), value="batch"),
            default_value="single", width="100%",
        ),
    )


def single_tab() -> rx.Component:
    return rx.vstack(
        rx.text_area(placeholder="Type what the voice should say… (Ctrl/Cmd-Enter generates)",
                     value=StudioState.text, on_change=StudioState.set_text, on_key_down=StudioState.on_key,
                     rows="5", width="100%", max_length=MAX_TEXT_CHARS, data_testid="studio-text"),
        rx.text(StudioState.char_count, size="1", color=rx.color("gray", 11), align="right", width="100%"),
        # Always there, so people learn it exists; greyed, and saying why, for voices that don't follow it.
        rx.vstack(
            rx.input(placeholder="How to speak (optional): calm and warm, a little slower…",
                     value=StudioState.instructions, on_change=StudioState.set_instructions,
                     max_length=MAX_INSTRUCTIONS_CHARS, width="100%", aria_label="How to speak",
                     disabled=~StudioState.voice_follows_instructions, data_testid="studio-instructions"),
            rx.cond(~StudioState.voice_follows_instructions,
                    rx.text("This voice doesn't follow instructions: Qwen3-TTS voices do (README, “Qwen3-TTS "
                            "settings”).", size="1", color=rx.color("gray", 10), data_testid="instructions-hint")),
            spacing="1", width="100%"),
        rx.flex(
            rx.select.root(
                rx.select.trigger(aria_label="Voice", data_testid="voice-select"),
                rx.select.content(rx.foreach(StudioState.voice_options,
                                             lambda choice: rx.select.item(choice["label"], value=choice["value"]))),
                value=StudioState.voice_id, on_change=StudioState.set_voice,
            ),
            rx.select(STUDIO_FORMATS, value=StudioState.fmt, on_change=StudioState.set_fmt,
                      data_testid="format-select"),
            # A native range input: named for screen readers ("Speed"), keyboard-driven, and always showing the
            # state's speed (after a reload or a Replay too), like the label beside it.
            rx.hstack(rx.el.label("Speed", html_for="studio-speed", style={"font_size": "var(--font-size-2)"}),
                      rx.el.input(type="range", id="studio-speed", min=0.5, max=2.0, step=0.1,
                                  value=StudioState.speed, on_change=StudioState.set_speed, width="120px",
                                  data_testid="speed", style={"accent_color": rx.color("accent", 9)}),
                      rx.text(StudioState.speed.to_string() + "×", size="2", data_testid="speed-label"),
                      align="center"),
            spacing="3", wrap="wrap", align="center", width="100%",
        ),
        rx.hstack(
            rx.button(rx.cond(StudioState.generating, "Generating…", "Generate"), on_click=StudioState.generate,
                      disabled=StudioState.generating | (StudioState.text.strip() == "")
                      | (StudioState.readiness == "down"), data_testid="generate"),
            rx.cond(StudioState.readiness == "down",
                    rx.text("No worker for this voice: " + StudioState.readiness_reason, size="1",
                            color=rx.color("red", 11), data_testid="generate-blocked")),
            rx.cond(StudioState.generating, rx.button("Cancel", variant="soft", color_scheme="gray",
                                                      on_click=StudioState.cancel, data_testid="cancel")),
            spacing="3", align="center", wrap="wrap",
        ),
        rx.cond(StudioState.generating | (StudioState.job_status == "succeeded"), rx.vstack(
            rx.progress(value=StudioState.progress.to(int), width="100%", data_testid="progress"),
            rx.text(StudioState.progress_text, size="2", color=rx.color("gray", 11), data_testid="progress-label",
                    data_status=StudioState.job_status, aria_live="polite"),
            width="100%", spacing="1")),
        rx.cond(StudioState.error != "", rx.callout(StudioState.error, color_scheme="red", icon="triangle_alert",
                                                    width="100%", data_testid="studio-error")),
        rx.cond(StudioState.audio_url != "", rx.vstack(
            rx.el.audio(src=StudioState.audio_url, controls=True, preload="auto", auto_play=True,
                        data_testid="player", style={"width": "100%"}),
            spoken_text(),
            rx.hstack(rx.link(rx.button(rx.icon("download", size=16), "Download", variant="soft"),
                              href=StudioState.audio_url, download=True, data_testid="download",
                              reload_document=True),
                      rx.cond(StudioState.captions_url != "", rx.fragment(
                          *[rx.link(rx.button(label, variant="ghost", size="1"), href=StudioState.captions_url + ext,
                                    download=True, reload_document=True, data_testid=f"captions-{ext[1:]}")
                            for label, ext in (("Captions (SRT)", ".srt"), ("Captions (VTT)", ".vtt"))])),
                      rx.text(StudioState.result_info, size="2", color=rx.color("gray", 11)), align="center",
                      wrap="wrap"),
            width="100%", spacing="2")),
        width="100%", spacing="3", padding_top="0.75rem",
    )


#: Marks the word being spoken (`data-active`) in `spoken_text`, in the browser: the player's own clock drives it
#: (every animation frame while playing, and on seek), with no round trip to the server. One listener on the
#: document, in the capture phase (media events don't bubble), so it survives the page re-rendering the words.
HIGHLIGHT_WORDS_JS = """(function () {
  if (window.__locknWordHighlight) return; window.__locknWordHighlight = true;
  function mark(player) {
    const box = document.getElementById('studio-words'); if (!box) return;
    const t = player.currentTime;
    for (const word of box.querySelectorAll('span[data-start]')) {
      const on = t >= Number(word.dataset.start) && t < Number(word.dataset.end);
      if ((word.dataset.active === 'true') === on) continue;
      word.dataset.active = on ? 'true' : 'false';
      const below = word.offsetTop + word.offsetHeight > box.scrollTop + box.clientHeight;
      if (on && (below || word.offsetTop < box.scrollTop)) box.scrollTop = word.offsetTop - box.clientHeight / 3;
    }
  }
  function follow(player) { mark(player); if (!player.paused && !player.ended) requestAnimationFrame(() => follow(player)); }
  for (const kind of ['play', 'timeupdate', 'seeked', 'ended']) {
    document.addEventListener(kind, (event) => {
      const player = event.target;
      if (player instanceof HTMLAudioElement && player.dataset.testid === 'player') {
        kind === 'play' ? follow(player) : mark(player);
      }
    }, true);
  }
})();"""


def spoken_text() -> rx.Component:
    """The generated text, word by word with its times, the word being spoken highlighted while it plays."""
    return rx.cond(StudioState.spoken_words.length() > 0, rx.fragment(
        rx.box(rx.foreach(StudioState.spoken_words, lambda word: rx.el.span(
                   word["text"] + " ", data_start=word["start"], data_end=word["end"], data_testid="spoken-word")),
               id="studio-words", data_testid="spoken-text", width="100%", line_height="1.8", max_height="12rem",
               overflow_y="auto", position="relative",  # the box scrolls to the spoken word (offsets are its own)
               style={"& span[data-active='true']": {"background": rx.color("accent", 5), "border_radius": "4px",
                                                     "box_shadow": f"0 0 0 2px {rx.color('accent', 5)}"}}),
        rx.script(HIGHLIGHT_WORDS_JS),
    ))


def waveform_bars() -> rx.Component:
    return rx.hstack(
        rx.foreach(StudioState.clip_waveform, lambda height: rx.box(
            width="3px", height=height.to_string() + "%", background=rx.color("accent", 9), border_radius="1px")),
        height="48px", align="center", spacing="1", width="100%", overflow="hidden", data_testid="waveform",
    )


def clone_panel() -> rx.Component:
    return panel(
        "Clone a voice",
        rx.text("Drop a clean 10–30 second recording of one speaker, then type exactly what it says.", size="2",
                color=rx.color("gray", 11)),
        drop_zone("clone", "upload", "Drop a WAV, MP3, FLAC or OGG file here, or click", AUDIO_TYPES,
                  StudioState.stage_clip(rx.upload_files(upload_id="clone")), StudioState.reject_files, "1.5rem"),
        rx.cond(StudioState.clip_seconds > 0, rx.vstack(
            rx.text(StudioState.clip_name + " · " + StudioState.clip_seconds.to_string() + " s of speech", size="2",
                    data_testid="clip-info"),
            waveform_bars(), width="100%", spacing="2")),
        rx.form(
            rx.vstack(
                rx.input(name="name", placeholder="Voice name", max_length=80, width="100%", required=True),
                rx.text_area(name="transcript", placeholder="Transcript of the recording", max_length=500,
                             width="100%", rows="3"),
                rx.button("Create voice", type="submit", data_testid="create-voice"),
                spacing="2", width="100%",
            ),
            on_submit=StudioState.create_voice, reset_on_submit=True, width="100%",
        ),
        rx.cond(StudioState.clone_error != "", rx.callout(StudioState.clone_error, color_scheme="red",
                                                          icon="triangle_alert", data_testid="clone-error")),
        rx.cond(StudioState.clone_notice != "", rx.callout(StudioState.clone_notice, color_scheme="green",
                                                           icon="check", data_testid="clone-notice")),
    )


def confirm_delete_generation(item: rx.Var[dict[str, str]]) -> rx.Component:
    """Deleting a generation removes its audio for good: ask first, naming it."""
    return confirm_action("Delete", "Delete this generation?", "“" + item["snippet"] + "” and its audio are deleted "
                          "for good.", "Delete", StudioState.delete_generation(item["id"]), keep="Keep it",
                          trigger_testid="delete-generation", confirm_testid="confirm-delete")


def history_row(item: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.card(
        rx.flex(
            rx.vstack(rx.text(item["snippet"], size="2"),
                      rx.text(item["voice"] + " · " + item["format"] + " · " + item["when"] + " · " + item["duration"],
                              size="1", color=rx.color("gray", 11)),
                      rx.cond(item["error"] != "", rx.text("Failed: " + item["error"], size="1",
                                                           color=rx.color("red", 11), data_testid="history-error")),
                      spacing="1", flex="1", min_width="0",
                      width=rx.breakpoints(initial="100%", sm="auto")),
            rx.hstack(
                rx.cond(item["url"] != "", rx.fragment(
                    rx.button("Replay", size="1", variant="soft", on_click=StudioState.replay(item),
                              data_testid="replay"),
                    rx.link(rx.button("Download", size="1", variant="soft"), href=item["url"], download=True,
                            reload_document=True)),
                    rx.badge(item["status"], variant="soft",
                             color_scheme=rx.cond(item["status"] == "failed", "red", "gray"))),
                confirm_delete_generation(item),
                spacing="2"),
            direction=rx.breakpoints(initial="column", sm="row"), gap="3", align=rx.breakpoints(initial="start",
                                                                                               sm="center"),
            width="100%",
        ),
        width="100%", data_testid="history-row", data_status=item["status"],
    )


def history_panel() -> rx.Component:
    return panel(
        "History",
        rx.cond(StudioState.history.length() > 0,
                rx.vstack(rx.foreach(StudioState.history, history_row), spacing="2", width="100%"),
                rx.text("Nothing generated yet: type some text above and press Generate.", size="2",
                        color=rx.color("gray", 11))),
        rx.cond(StudioState.history_cursor != "",
                rx.button("Show older", variant="soft", on_click=StudioState.more_history)),
    )


def studio_page() -> rx.Component:
    return private_page(StudioState, "Voice Studio", "studio",
                        readiness_banner(), generate_panel(), library_panel(), clone_panel(), history_panel())
