"""State of the Voice Studio: the voice library, generating speech, cloning a voice, history.

Handlers call the same services as the API (`backend/services/jobs/service.py`, `voices.py`,
`job_audio.py`), never the app's own HTTP API. Generation runs as a background event that
follows the job as its worker reports it (`follow_job`, the API's own mechanism), so the page
never freezes; every private action re-checks the session first.
"""

from __future__ import annotations

import contextlib

import numpy as np
import reflex as rx

from backend.services.voices import service as voice_library
from backend.services.jobs.admission import Overloaded, TooFast, TooManyConcurrent
from backend.services.keys.studio_usage import StudioQuotaReached
from backend.services.common.errors import ServiceUnavailable
from backend.services.jobs.audio import follow_job
from backend.services.jobs.progress import progress_words
from backend.services.status.readiness import voice_readiness
from backend.services.jobs.request_rules import FORMATS, MAX_INSTRUCTIONS_CHARS
from backend.services.jobs.service import (
    CANCELLED_MESSAGE, MAX_TEXT_CHARS, CaptionsUnavailable, InvalidJobRequest, JobNotFound, cancel_job, delete_job,
    enqueue_synthesis, job_captions, list_jobs,
)
from state.auth import AuthState, private_page, signed_in

STUDIO_FORMATS = ["wav", "mp3", "flac", "opus"]
HISTORY_PAGE = 10
WAVEFORM_BARS = 60


def play_from_start(url: str) -> str:
    """JavaScript that plays the Studio's player from the start once it holds `url` (the page renders the new
    source a moment after the state changes; a click is what lets a browser play sound)."""
    return ("(function play(tries){const p=document.querySelector('audio[data-testid=player]');"
            f"if(p&&p.getAttribute('src')==={url!r}){{p.currentTime=0;p.play().catch(()=>{{}});}}"
            "else if(tries<50){setTimeout(()=>play(tries+1),100);}})(0)")
#: Where an operator learns to add a cloning engine (the README ships with every LockN install).
FISH_README = "README.md, section “Add a GPU worker”"


def control_speed(value: str | float | list[float], current: float) -> float:
    """A speed for the Studio's control (0.5–2×, two decimals) from what a control or a history row holds;
    `current` when it is not a number."""
    try:
        speed = float(value[0] if isinstance(value, list) else value)
    except (TypeError, ValueError, IndexError):
        return current
    return round(min(max(speed, 0.5), 2.0), 2)


def waveform(pcm: np.ndarray, bars: int = WAVEFORM_BARS) -> list[int]:
    """Peak heights (0–100) of `bars` equal slices: a picture of the clip before it becomes a voice."""
    if pcm.size == 0:
        return [0] * bars
    slices = np.array_split(np.abs(pcm), bars)
    peaks = np.array([s.max() if s.size else 0.0 for s in slices])
    return [int(4 + 96 * p / (peaks.max() or 1.0)) for p in peaks]


class StudioState(AuthState):
    voices: list[dict[str, str]] = []
    search: str = ""
    text: str = ""
    voice_id: str = ""
    fmt: str = "wav"
    speed: float = 1.0
    #: How to speak, for voices that follow instructions (Qwen3-TTS presets); sent only to those.
    instructions: str = ""
    #: Whether the chosen voice can be spoken now (`services/readiness.py`, from the workers' heartbeats):
    #: "ready", "warming" or "down" ("checking" until asked), and why; asked on load, on a voice change and
    #: every few seconds, so a stopped worker shows in the header and on Generate without a reload.
    readiness: str = "checking"
    readiness_reason: str = ""
    # the generation in flight (or the last one)
    job_id: str = ""
    job_status: str = ""
    progress: float = 0.0
    #: The job's progress in words ("waiting for a worker", "speaking sentence 3 of 7"): `job_progress.py`.
    progress_text: str = ""
    audio_url: str = ""
    #: Where the shown generation's captions are (`….srt`, `….vtt` appended); empty when it has none.
    captions_url: str = ""
    #: The words of the audio in the player, with their times (from its captions): highlighted as it plays.
    spoken_words: list[dict[str, str]] = []
    result_info: str = ""
    error: str = ""
    notice: str = ""
    # cloning
    clip_name: str = ""
    clip_seconds: float = 0.0
    clip_waveform: list[int] = []
    clone_error: str = ""
    clone_notice: str = ""
    #: The voice service's token for the checked clip waiting to become a voice.
    _staged_clip: str = ""
    # history
    history: list[dict[str, str]] = []
    history_cursor: str = ""

    @rx.var
    def char_count(self) -> str:
        return f"{len(self.text):,} / {MAX_TEXT_CHARS:,}"

    @rx.var
    def generating(self) -> bool:
        return self.job_status in ("queued", "running")

    @rx.var
    def filtered_voices(self) -> list[dict[str, str]]:
        needle = self.search.strip().lower()
        return [v for v in self.voices if not needle or needle in (v["name"] + " " + v["language"]).lower()]

    @rx.var
    def voice_follows_instructions(self) -> bool:
        return any(v["id"] == self.voice_id and v.get("instructions") for v in self.voices)

    @rx.var
    def voice_options(self) -> list[dict[str, str]]:
        """The picker's choices: a voice's name shown, its id sent."""
        return [{"value": v["id"], "label": v["name"]} for v in self.voices]

    # ----- loading ---------------------------------------------------------------------------------

    @rx.event
    @private_page
    def load(self, owner: str):  # type: ignore[no-untyped-def]
        self._refresh_voices()
        self._refresh_history()
        self._check_readiness()
        return None

    def _check_readiness(self) -> None:
        found = voice_readiness(self.voice_id)
        self.readiness, self.readiness_reason = found.status, found.reason

    @rx.event
    def check_readiness(self) -> None:
        """Ask the heartbeats again. A worker going away keeps the chosen voice (the header says why it cannot be
        spoken); one coming back (or any worker, while no voice is chosen) reloads the library."""
        before = self.readiness
        self._check_readiness()
        back = self.readiness != "down" and before not in ("ready", "checking")
        if (back or not self.voice_id) and self._owner() is not None:
            self._refresh_voices()
            self._check_readiness()

    def _refresh_voices(self) -> None:
        owner = self._owner()
        if owner is None:
            return
        try:
            entries = voice_library.list_voices(owner)
            # An engine a worker cannot run (no weights yet) says so, instead of its voices silently missing.
            self.notice = " ".join(f"{name} voices are unavailable: {reason}."
                                   for name, reason in sorted(voice_library.unavailable_engines().items()))
        except ServiceUnavailable as exc:
            entries, self.notice = voice_library.cloned_voices(owner), str(exc)
        self.voices = [{"id": v.id, "name": v.name, "engine": " / ".join(v.engines) or v.engine, "language": v.language, "kind": v.kind,
                        "sample_url": f"/api/voice/voices/{v.id}/sample",
                        "instructions": "yes" if v.follows_instructions else ""} for v in entries]
        if self.voice_id not in {v["id"] for v in self.voices}:
            self.voice_id = next((v["id"] for v in self.voices if v["kind"] == "builtin"), "")

    def _refresh_history(self, cursor: str | None = None) -> None:
        owner = self._owner()
        if owner is None:
            return
        jobs, next_cursor = list_jobs(owner, HISTORY_PAGE, cursor)
        names = {v["id"]: v["name"] for v in self.voices}
        rows = [{"id": j.id, "snippet": j.text if len(j.text) <= 60 else j.text[:57] + "…", "voice_id": j.voice,
                 "voice": names.get(j.voice, j.voice),
                 "format": j.format.upper(), "when": j.created_at.strftime("%Y-%m-%d %H:%M"), "status": j.status,
                 "duration": f"{j.duration_s:.1f} s" if j.duration_s else "",
                 "url": f"/api/voice/jobs/{j.id}/audio" if j.status == "succeeded" else "",
                 # A failed row says why (the worker's or the admission's message), as the Studio did when it ran.
                 "error": (j.error or "no reason was recorded") if j.status == "failed" else "",
                 "progress": progress_words(j.status, j.text, j.chars_done, j.error), "speed": str(j.speed),
                 "captions": "yes" if j.captions and j.status == "succeeded" else ""} for j in jobs]
        self.history = (self.history if cursor else []) + rows
        self.history_cursor = next_cursor or ""

    @rx.event
    @signed_in
    def more_history(self, owner: str):  # type: ignore[no-untyped-def]
        self._refresh_history(self.history_cursor or None)
        return None

    # ----- form ------------------------------------------------------------------------------------

    @rx.event
    def set_text(self, value: str) -> None:
        self.text = value[:MAX_TEXT_CHARS]

    @rx.event
    def set_search(self, value: str) -> None:
        self.search = value

    @rx.event
    def set_voice(self, value: str) -> None:
        self.voice_id = value
        self._check_readiness()

    @rx.event
    def set_instructions(self, value: str) -> None:
        self.instructions = value[:MAX_INSTRUCTIONS_CHARS]

    @rx.event
    def set_fmt(self, value: str) -> None:
        self.fmt = value if value in FORMATS else "wav"

    @rx.event
    def set_speed(self, value: str | float | list[float]) -> None:
        """From the range input (a string) or a list of one value; kept within the control's range."""
        self.speed = control_speed(value, self.speed)

    @rx.event
    def on_key(self, key: str, info: dict):  # type: ignore[no-untyped-def]
        """Ctrl/Cmd-Enter generates."""
        if key == "Enter" and (info.get("ctrl_key") or info.get("meta_key")):
            return StudioState.generate
        return None

    # ----- generating -------------------------------------------------------------------------------

    @rx.event(background=True)
    async def generate(self):  # type: ignore[no-untyped-def]
        async with self:
            owner = self._owner()
            if owner is None:
                return self._sign_in_redirect()
            if self.generating:
                return None
            self.error, self.audio_url, self.result_info, self.progress = "", "", "", 0.0
            self.captions_url, self.spoken_words = "", []
            self._check_readiness()
            if self.readiness == "down":  # say why now, rather than queue a job no worker will take
                self.error = "No worker for this voice: " + self.readiness_reason
                return None
            try:
                job = enqueue_synthesis(owner, self.text, self.voice_id, self.fmt, self.speed, captions=True,
                                        instructions=self.instructions if self.voice_follows_instructions else "")
            except (InvalidJobRequest, TooManyConcurrent, TooFast, Overloaded, StudioQuotaReached) as exc:
                self.error = str(exc)
                return None
            except ServiceUnavailable as exc:
                self.error = str(exc)  # names the README section when no cloning engine runs
                return None
            self.job_id, self.job_status = job.id, job.status
            self.progress_text = progress_words(job.status, self.text, 0)
        await self._follow(owner, job.id)
        return None

    @staticmethod
    def _words_of(job_id: str, owner: str) -> list[dict[str, str]]:
        """The job's words with their times (estimated within each exact sentence), as the page shows them."""
        try:
            words = job_captions(job_id, owner)["words"]
        except (CaptionsUnavailable, JobNotFound):
            return []
        return [{"text": w["text"], "start": f"{w['start']:.3f}", "end": f"{w['end']:.3f}"} for w in words]

    async def _follow(self, owner: str, job_id: str) -> None:
        """Mirror the job's progress until it ends (or another generation replaces it); never blocks the page."""
        async with contextlib.aclosing(follow_job(job_id, owner)) as updates:
            async for status in updates:
                async with self:
                    if self.job_id != job_id:
                        return
                    self.job_status, self.progress = status.status, status.progress
                    self.progress_text = progress_words(status.status, status.text, status.chars_done, status.error)
                    if status.status == "succeeded":
                        self.audio_url = f"/api/voice/jobs/{job_id}/audio"
                        self.captions_url = f"/api/voice/jobs/{job_id}/captions" if status.captions else ""
                        self.spoken_words = self._words_of(job_id, owner) if status.captions else []
                        self.result_info = (f"{status.duration_s:.1f} s of audio, made in "
                                            f"{(status.finished_at - status.created_at).total_seconds():.1f} s")
                    elif status.status == "failed":
                        self.error = status.error or "generation failed"
                    if status.status in ("succeeded", "failed"):
                        self._refresh_history()
                        return

    @rx.event
    @signed_in
    def cancel(self, owner: str):  # type: ignore[no-untyped-def]
        if self.job_id and self.generating:
            cancel_job(self.job_id, owner)
            self.job_status, self.error = "failed", CANCELLED_MESSAGE
            self.progress_text = progress_words("failed", "", 0, CANCELLED_MESSAGE)
        return None

    @rx.event
    @signed_in
    def replay(self, owner: str, item: dict[str, str]):  # type: ignore[no-untyped-def]
        """Put a past generation back in the player, with its voice and format chosen again, and play it."""
        self.job_id, self.job_status, self.audio_url, self.error = item["id"], "succeeded", item["url"], ""
        self.captions_url = f"/api/voice/jobs/{item['id']}/captions" if item["captions"] else ""
        self.spoken_words = self._words_of(item["id"], owner) if item["captions"] else []
        self.progress, self.result_info = 100.0, f"{item['duration']} of audio, from your history"
        self.progress_text = item["progress"]
        self.speed = control_speed(item.get("speed", ""), self.speed)  # Replay puts back how fast it was spoken
        if item["voice_id"] in {v["id"] for v in self.voices}:
            self.voice_id = item["voice_id"]
        self.fmt = item["format"].lower() if item["format"].lower() in STUDIO_FORMATS else self.fmt
        return rx.call_script(play_from_start(item["url"]))

    @rx.event
    @signed_in
    def delete_generation(self, owner: str, job_id: str):  # type: ignore[no-untyped-def]
        try:
            delete_job(job_id, owner)
        except JobNotFound:
            pass
        if self.job_id == job_id:
            self.audio_url, self.result_info, self.captions_url, self.spoken_words = "", "", "", []
        self.history = [row for row in self.history if row["id"] != job_id]  # older pages stay shown
        return None

    # ----- cloning ----------------------------------------------------------------------------------

    @rx.event
    @signed_in
    async def stage_clip(self, owner: str, files: list[rx.UploadFile]):  # type: ignore[no-untyped-def]
        """The dropped clip is checked at once; its duration and waveform show before it becomes a voice."""
        if not files:
            # The dropzone calls this for a refused drop too, with no files, over HTTP, while `reject_files`
            # arrives over the websocket: touching nothing here keeps its message whichever lands first.
            return None
        self.clone_error = self.clone_notice = ""
        self.clip_name, self.clip_seconds, self.clip_waveform = "", 0.0, []
        voice_library.discard_staged(owner, self._staged_clip)
        self._staged_clip = ""
        upload = files[0]
        data = await upload.read()
        try:
            staged = voice_library.stage_clip(owner, data)
        except voice_library.VoiceRejected as exc:
            self.clone_error = str(exc)
            return None
        self._staged_clip = staged.token
        self.clip_name = upload.name or "clip"
        self.clip_seconds = staged.seconds
        self.clip_waveform = waveform(staged.speech)
        return None

    @rx.event
    def reject_files(self, _rejections: list[dict]) -> None:
        self.clone_error = "That file is not audio we can use: choose a WAV, MP3, FLAC or OGG recording."

    @rx.event
    @signed_in
    def create_voice(self, owner: str, form: dict):  # type: ignore[no-untyped-def]
        self.clone_error = self.clone_notice = ""
        try:
            entry = voice_library.create_from_staged(owner, self._staged_clip, str(form.get("name", "")),
                                                     str(form.get("transcript", "")))
        except voice_library.VoiceRejected as exc:
            self.clone_error = str(exc)
            return None
        self._staged_clip, self.clip_name, self.clip_seconds, self.clip_waveform = "", "", 0.0, []
        self._refresh_voices()
        self.clone_notice = (f"“{entry.name}” is in your library." if self._cloning_engines_live() else
                             f"“{entry.name}” is in your library. Speaking with it needs a cloning engine (Fish "
                             f"Speech or Qwen3-TTS), and none is running: see {FISH_README}.")
        return None

    def _cloning_engines_live(self) -> bool:
        try:
            return bool(voice_library.cloning_engines())
        except ServiceUnavailable:
            return False

    @rx.event
    @signed_in
    def delete_voice(self, owner: str, voice_id: str):  # type: ignore[no-untyped-def]
        try:
            voice_library.delete_cloned_voice(owner, voice_id)
        except voice_library.VoiceNotFound:
            pass
        self._refresh_voices()
        return None

