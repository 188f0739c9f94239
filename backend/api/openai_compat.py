"""`/v1`: OpenAI's audio API, so the `openai` SDK and Open WebUI work unchanged.

Errors use OpenAI's envelope (see `backend/api/errors.py`). `/v1/audio/speech`
streams the audio as the worker speaks it (WAV, PCM, MP3, AAC, Opus), or, with
`stream_format: "sse"`, as `speech.audio.delta` / `speech.audio.done` events.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from backend.api.auth import bearer_token
from backend.api.deps import ReadKey, WriteKey
from backend.api.errors import ApiError, OpenAIErrorEnvelope, error_responses
from backend.core.request_context import current_facts
from backend.services.voices import openai_compat
from backend.services.voices import service as voice_library
from backend.services.jobs.audio import JobFailed, TimedDelta, finished_audio, job_deltas, live_chunks
from backend.services.jobs.request_rules import (
    FORMATS, MAX_INSTRUCTIONS_CHARS, MAX_SPEED, MIN_SPEED, STREAMABLE, FormatName, content_type,
)
from backend.services.jobs.service import MAX_TEXT_CHARS, enqueue_synthesis
from backend.services.keys.service import KeyRejected, get_key_service

router = APIRouter(prefix="/v1", tags=["openai-compatible"], responses=error_responses(OpenAIErrorEnvelope))


class SpeechIn(BaseModel):
    """OpenAI's `audio.speech.create` request, field for field."""

    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    voice: str = Field(min_length=1, description="An OpenAI voice name (mapped) or any LockN voice id.")
    response_format: FormatName = "mp3"
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED)
    instructions: str | None = Field(None, max_length=MAX_INSTRUCTIONS_CHARS,
                                     description="How to speak: followed by Qwen3-TTS CustomVoice voices, "
                                                 "ignored by Piper and Fish Speech (as tts-1 ignores it).")
    stream_format: Literal["audio", "sse"] = "audio"


def model_list() -> dict:
    return {"object": "list", "data": [{"id": model_id, "object": "model", "created": openai_compat.MODELS_CREATED,
                                        "owned_by": "lockn"} for model_id in openai_compat.MODELS]}


@router.get("/models", summary="Models (OpenAI schema)")
def models(_key: ReadKey) -> dict:
    return model_list()


@router.post("/audio/speech", summary="Text to speech (OpenAI schema)",
             responses={200: {"content": {f.content_type: {} for f in FORMATS.values()}}})
async def speech(body: SpeechIn, key: WriteKey) -> Response:
    """Asynchronous end to end: waiting for the worker holds no thread (see `backend/services/jobs/audio.py`)."""
    if body.model not in openai_compat.MODELS:
        raise ApiError(404, "model_not_found", f"The model {body.model!r} does not exist; see /v1/models.",
                       param="model")
    if body.stream_format == "sse" and body.response_format not in STREAMABLE:
        raise ApiError(400, "invalid_request", f"{body.response_format} cannot be streamed as events; "
                                               f"use one of {', '.join(STREAMABLE)}", param="response_format")
    voice = openai_compat.resolve_voice(body.voice)
    job = await asyncio.to_thread(enqueue_synthesis, key.owner, body.input, voice, body.response_format,
                                  body.speed, key=key, instructions=body.instructions or "",
                                  engine=openai_compat.MODEL_ENGINES.get(body.model))
    media_type = content_type(body.response_format)
    headers = key.rate.headers()  # a response built here does not get the dependency's headers by itself
    if body.stream_format == "sse":
        return StreamingResponse(sse_events(await job_deltas(job, body.response_format), len(body.input)),
                                 media_type="text/event-stream", headers=headers)
    if job.status != "succeeded" and body.response_format in STREAMABLE:
        return StreamingResponse(await live_chunks(job.id, body.response_format), media_type=media_type,
                                 headers=headers)
    finished, path = await finished_audio(job.id, key.owner)
    if (facts := current_facts()) is not None:
        facts.audio_seconds = finished.duration_s
    return FileResponse(path, media_type=media_type, headers=headers)


async def sse_events(deltas: AsyncIterator[TimedDelta], input_chars: int) -> AsyncIterator[str]:
    """OpenAI's speech events: base64 audio deltas, then `done` with token-like usage figures.

    LockN's extension: `lockn_timestamps` lists each sentence's start and end in the audio and its words'
    estimated times, as captions have them, on the first delta with audio after the sentence's audio is
    complete (the `done` event carries any left). Clients that don't know the field ignore it.
    A job that fails after its first audio (or a stream that lost a piece) ends with an `error` event, never `done`."""
    sent, pending = 0, []
    try:
        async for delta in deltas:
            pending += delta.timestamps
            if delta.data:
                sent += len(delta.data)
                event = {"type": "speech.audio.delta", "audio": base64.b64encode(delta.data).decode()}
                if pending:
                    event["lockn_timestamps"], pending = pending, []
                yield "data: " + json.dumps(event) + "\n\n"
    except JobFailed as failed:  # after the 200 went out: the error is the last event, and no `done` follows
        error = {"message": str(failed), "type": "server_error", "param": None, "code": "synthesis_failed"}
        yield "data: " + json.dumps({"type": "error", "error": error}) + "\n\n"
        return
    usage = {"input_tokens": input_chars, "output_tokens": sent, "total_tokens": input_chars + sent}
    done: dict = {"type": "speech.audio.done", "usage": usage}
    if pending:
        done["lockn_timestamps"] = pending
    yield "data: " + json.dumps(done) + "\n\n"


# ----- what Open WebUI asks for, without a key ---------------------------------------------------------


def optional_owner(request: Request) -> str | None:
    """The owner of a valid `tts:read` key when one is sent; None for anonymous callers (Open WebUI's lists)."""
    token = bearer_token(request)
    if not token:
        return None
    try:
        return get_key_service().verify(token, ("tts:read",)).owner
    except KeyRejected:
        return None


@router.get("/audio/models", summary="TTS models, in the shape Open WebUI reads (no key needed)")
def audio_models() -> dict:
    return {"models": [{"id": model_id, "name": description} for model_id, description in
                       openai_compat.MODELS.items()]}


@router.get("/audio/voices", summary="Voices, in the shape Open WebUI reads (key optional: adds your clones)")
def audio_voices(request: Request) -> dict:
    entries = voice_library.list_voices(optional_owner(request))
    mapped = openai_compat.voice_map()
    known = {entry.id: entry for entry in entries}
    voices = [{"id": entry.id, "name": entry.name, "engines": list(entry.engines)} for entry in entries]
    voices += [{"id": name, "name": f"{name} → {target}", "engines": list(known[target].engines)}
               for name, target in mapped.items() if target in known]
    return {"voices": voices}
