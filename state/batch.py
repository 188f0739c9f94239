"""The Studio's Batch tab: upload a file of lines, watch the batch's progress, download its zip."""

from __future__ import annotations

import asyncio

import reflex as rx

from backend.services.jobs import batches
from backend.services.jobs.admission import TooFast
from backend.services.common.errors import ServiceUnavailable
from backend.services.keys.studio_usage import StudioQuotaReached
from state.auth import AuthState, signed_in

#: How often the tab re-reads a running batch's progress.
POLL_S = 1.0


class BatchState(AuthState):
    batch_id: str = ""
    batch_status: str = ""
    batch_total: int = 0
    batch_done: int = 0
    batch_failed: int = 0
    batch_error: str = ""
    batch_captions: bool = False
    #: What a dropped file would make (lines, voices, characters, about how long), shown before it starts;
    #: empty when nothing waits. The file itself waits server-side only (`_pending`), never in the page.
    preview: dict[str, str] = {}
    _pending: bytes = b""

    @rx.var
    def batch_percent(self) -> int:
        return round(100 * (self.batch_done + self.batch_failed) / self.batch_total) if self.batch_total else 0

    @rx.var
    def archive_url(self) -> str:
        return f"/api/voice/batches/{self.batch_id}/archive.zip" if self.batch_id else ""

    @rx.event
    def set_batch_captions(self, value: bool) -> None:
        self.batch_captions = bool(value)

    @rx.event
    def reject_file(self, rejections: list[dict]) -> None:
        """A file the drop zone does not take (a .txt, a picture): refused in words, as the clone zone does."""
        dropped = rejections[0].get("file") if rejections and isinstance(rejections[0], dict) else None
        name = str(dropped.get("path") or dropped.get("name") or "") if isinstance(dropped, dict) else ""
        self.preview, self._pending = {}, b""
        self.batch_error = (f"{name or 'That file'} is not a batch file: drop a .csv (with a header row: text, voice, "
                            "format, id) or a .jsonl file of lines.")

    @rx.event
    @signed_in
    async def upload_batch(self, owner: str, files: list[rx.UploadFile]):  # type: ignore[no-untyped-def]
        """Check the file (every line, every voice) and preview it: nothing starts until Start is pressed; a bad
        line is named."""
        if not files:
            return None  # a refused drop also sends an empty upload: keep reject_file's words
        data = await files[0].read()
        self.batch_error, self.preview, self._pending = "", {}, b""
        try:
            found = await asyncio.to_thread(batches.preview_batch, owner, data)
        except (batches.InvalidBatch, ServiceUnavailable) as exc:
            self.batch_error = str(exc)
            return None
        minutes, seconds = divmod(round(found.speech_seconds), 60)
        self.preview = {"name": files[0].name or "the file", "lines": f"{found.lines:,}",
                        "voices": ", ".join(found.voices), "characters": f"{found.characters:,}",
                        "speech": f"about {minutes} min {seconds} s" if minutes else f"about {seconds} s"}
        self._pending = data
        return None

    @rx.event
    def discard_preview(self) -> None:
        self.preview, self._pending = {}, b""

    @rx.event
    @signed_in
    async def start_batch(self, owner: str):  # type: ignore[no-untyped-def]
        """Start the previewed file (checked again: a voice may have gone since). The upload counts on the
        Studio's rate limit like one generation."""
        if not self._pending:
            return None
        try:
            view = await asyncio.to_thread(batches.create_batch, owner, self._pending, None, self.batch_captions)
        except (batches.InvalidBatch, TooFast, StudioQuotaReached, ServiceUnavailable) as exc:
            self.batch_error = str(exc)
            return None
        self.preview, self._pending, self.batch_error = {}, b"", ""
        self._show(view)
        return BatchState.follow_batch

    @rx.event(background=True)
    async def follow_batch(self):  # type: ignore[no-untyped-def]
        """Re-read the batch's progress until every line has ended."""
        while True:
            async with self:
                owner = self._owner()
                if owner is None or not self.batch_id:
                    return
                try:
                    view = batches.get_batch(owner, self.batch_id)
                except batches.BatchNotFound:
                    return
                self._show(view)
                if view.status != "running":
                    return
            await asyncio.sleep(POLL_S)

    @rx.event
    @signed_in
    def cancel_batch(self, owner: str):  # type: ignore[no-untyped-def]
        if self.batch_id:
            self._show(batches.cancel_batch(owner, self.batch_id))
        return None

    def _show(self, view: batches.BatchView) -> None:
        self.batch_id, self.batch_status = view.id, view.status
        self.batch_total, self.batch_done, self.batch_failed = view.total, view.done, view.failed
