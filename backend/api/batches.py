"""`/api/voice/batches`: send a file of lines (JSON lines or CSV), follow its progress, cancel it, download its
zip. The rules live in `backend/services/jobs/batches.py`."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from backend.api.deps import Reader, ReadKey, WriteKey
from backend.api.errors import ApiErrorEnvelope, error_responses
from backend.api.view_models import model_of
from backend.services.jobs import batches

router = APIRouter(prefix="/api/voice/batches", tags=["batches"], responses=error_responses(ApiErrorEnvelope))
BatchOut = model_of("BatchOut", batches.BatchView, archive_url=(str, ...))


def batch_out(view: batches.BatchView) -> BatchOut:  # type: ignore[valid-type]
    return BatchOut(**vars(view), archive_url=f"/api/voice/batches/{view.id}/archive.zip")


@router.post("", status_code=202, response_model=BatchOut,
             summary="Speak a file of lines (JSON lines or CSV: text, voice, format, id)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}}}})
async def create_batch(request: Request, key: WriteKey,
                       captions: Annotated[bool, Query(description="SRT captions in the zip")] = False) -> BatchOut:  # type: ignore[valid-type]
    data = await request.body()
    view = await asyncio.to_thread(batches.create_batch, key.owner, data, key.id, captions)
    return batch_out(view)


@router.get("", summary="Your batches, newest first")
def list_batches(key: ReadKey) -> dict[str, list[BatchOut]]:  # type: ignore[valid-type]
    return {"data": [batch_out(view) for view in batches.list_batches(key.owner)]}


@router.get("/{batch_id}", response_model=BatchOut, summary="A batch's progress")
def get_batch(batch_id: str, key: ReadKey) -> BatchOut:  # type: ignore[valid-type]
    return batch_out(batches.get_batch(key.owner, batch_id))


@router.post("/{batch_id}/cancel", response_model=BatchOut, summary="Cancel the lines not yet spoken")
def cancel_batch(batch_id: str, key: WriteKey) -> BatchOut:  # type: ignore[valid-type]
    return batch_out(batches.cancel_batch(key.owner, batch_id))


@router.get("/{batch_id}/archive.zip", summary="The audio of every line, captions and manifest.json",
            response_class=FileResponse, responses={200: {"content": {"application/zip": {}}}})
def archive(batch_id: str, owner: Reader) -> FileResponse:
    """A key with `tts:read`, or the Studio's signed-in session (its download link)."""
    path = batches.archive(owner, batch_id)
    return FileResponse(path, media_type="application/zip", filename=f"{batch_id}.zip")
