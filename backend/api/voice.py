"""`/api/voice`: the voice library, cloning uploads, and synthesis jobs (API key with `tts:*` scopes)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field
from backend.api.deps import Reader, ReadKey, WriteKey
from backend.api.errors import ApiError, ApiErrorEnvelope, error_responses
from backend.api.view_models import model_of
from backend.services.voices import service as voice_library
from backend.services.jobs.audio import finished_audio
from backend.services.jobs.request_rules import (
    MAX_INSTRUCTIONS_CHARS, MAX_SPEED, MIN_SPEED, FormatName, content_type, file_name,
)
from backend.services.jobs.service import (
    MAX_TEXT_CHARS, SAMPLE_OWNER, CaptionFormat, JobStatus, cancel_job, captions_file, enqueue_synthesis, job_status,
    list_jobs, voice_sample_job,
)

router = APIRouter(prefix="/api/voice", tags=["voice"], responses=error_responses(ApiErrorEnvelope))


class VoiceOut(BaseModel):
    id: str
    name: str
    engine: str
    language: str
    kind: Literal["builtin", "cloned"]
    sample_url: str
    created_at: datetime | None
    engines: list[str] = Field(description="Every engine that can speak this voice now (a cloned voice: each "
                                           "live cloning engine)")
    follows_instructions: bool = Field(description="Whether `instructions` steer this voice")


def voice_out(entry: voice_library.VoiceEntry) -> VoiceOut:
    return VoiceOut(**vars(entry), sample_url=f"/api/voice/voices/{entry.id}/sample")


class UnavailableEngineOut(BaseModel):
    engine: str
    reason: str = Field(description="Why a worker told to run this engine cannot (e.g. the command that pulls "
                                    "its weights); its voices are not listed until it can")


@router.get("/voices", summary="Built-in voices and your cloned voices")
def list_voices(key: ReadKey) -> dict[str, list[VoiceOut] | list[UnavailableEngineOut]]:
    return {"data": [voice_out(v) for v in voice_library.list_voices(key.owner)],
            "unavailable": [UnavailableEngineOut(engine=name, reason=reason)
                            for name, reason in sorted(voice_library.unavailable_engines().items())]}


@router.post("/voices", status_code=201, response_model=VoiceOut, summary="Clone a voice from a 10–30 s clip")
async def clone_voice(key: WriteKey, name: Annotated[str, Form(max_length=200)],
                      transcript: Annotated[str, Form(max_length=2000)], audio: Annotated[UploadFile, File()],
                      language: Annotated[str, Form(max_length=16)] = "en") -> VoiceOut:
    data = await audio.read(voice_library.MAX_UPLOAD_BYTES + 1)
    # Decoding is CPU work: off the event loop, so other requests keep being answered
    entry = await asyncio.to_thread(voice_library.create_cloned_voice, key.owner, name, transcript, data,
                                    language)
    return voice_out(entry)


@router.delete("/voices/{voice_id}", status_code=204, summary="Delete one of your cloned voices")
def delete_voice(voice_id: str, key: WriteKey) -> Response:
    if not voice_id.startswith(voice_library.CLONED_PREFIX):
        raise ApiError(403, "forbidden", "Built-in voices cannot be deleted.")
    voice_library.delete_cloned_voice(key.owner, voice_id)
    return Response(status_code=204)


@router.get("/voices/{voice_id}/sample", summary="A short sample of the voice")
async def voice_sample(voice_id: str, owner: Reader) -> FileResponse:
    """A cloned voice's sample is its reference clip; a built-in voice reads a fixed sentence, made once for
    everyone (never a job in your history)."""
    if voice_id.startswith(voice_library.CLONED_PREFIX):
        await asyncio.to_thread(voice_library.get_cloned_voice, owner, voice_id)
        return FileResponse(voice_library.reference_path(voice_id), media_type="audio/wav")
    job = await asyncio.to_thread(voice_sample_job, voice_id)
    _, path = await finished_audio(job.id, SAMPLE_OWNER)
    return FileResponse(path, media_type=content_type("mp3"))


class JobIn(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    voice: str = Field(min_length=1, max_length=120)
    format: FormatName = "wav"
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED)
    captions: bool = Field(False, description="Keep sentence (exact) and word (estimated) timings, served at "
                                              "/api/voice/jobs/{id}/captions.{json,srt,vtt}")
    instructions: str = Field("", max_length=MAX_INSTRUCTIONS_CHARS,
                              description="How to speak (\"calm, a little slower\"): followed by engines that "
                                          "support it (Qwen3-TTS CustomVoice), ignored by the others")
    engine: str | None = Field(None, max_length=20, description="For a cloned voice: the cloning engine to speak "
                                                                 "it (fish or qwen3) when both run; built-in "
                                                                 "voices belong to one engine")


#: A job as the API shows it: every field of the service's `JobStatus` but the server's file path, plus links.
#: Built from the dataclass, so a field added there reaches the API (and its schema) without a second list.
JobOut = model_of("JobOut", JobStatus, exclude=("audio_path",), status_url=(str, ...), audio_url=(str | None, ...))


def job_out(status: JobStatus) -> BaseModel:
    fields = {k: v for k, v in vars(status).items() if k != "audio_path"}
    done = status.status == "succeeded"
    return JobOut(**fields, status_url=f"/api/voice/jobs/{status.id}",
                  audio_url=f"/api/voice/jobs/{status.id}/audio" if done else None)


@router.post("/jobs", status_code=202, response_model=JobOut, summary="Queue a synthesis job")
def create_job(body: JobIn, key: WriteKey) -> JobOut:
    job = enqueue_synthesis(key.owner, body.text, body.voice, body.format, body.speed, key=key,
                            captions=body.captions, instructions=body.instructions, engine=body.engine)
    return job_out(job_status(job.id, key.owner))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, summary="Stop a queued or running job")
def cancel(job_id: str, key: WriteKey) -> BaseModel:
    """The worker stops between sentences; the job ends `failed` with the error "Cancelled.". A finished
    job is left as it is."""
    cancel_job(job_id, key.owner)
    return job_out(job_status(job_id, key.owner))


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's status and progress")
def get_job(job_id: str, key: ReadKey) -> JobOut:
    return job_out(job_status(job_id, key.owner))


@router.get("/jobs/{job_id}/audio", summary="The job's audio (supports Range requests)")
def job_audio(job_id: str, owner: Reader, request: Request) -> FileResponse:
    status = job_status(job_id, owner)
    if status.status != "succeeded" or not status.audio_path:
        raise ApiError(409, "not_ready", f"The job is {status.status}; its audio is not ready yet.")
    return FileResponse(status.audio_path, media_type=content_type(status.format),
                        filename=file_name(job_id, status.format))


CAPTION_TYPES = {"json": "application/json", "srt": "application/x-subrip", "vtt": "text/vtt"}


@router.get("/jobs/{job_id}/captions.{fmt}", summary="The job's captions: JSON (sentences and words), SRT or VTT")
def job_captions_file(job_id: str, fmt: CaptionFormat, owner: Reader) -> Response:
    """Sentence times are exact (the engine's own sentence chunks); word times are estimated within each
    sentence by its characters (`words_are: "estimated"` in the JSON)."""
    return Response(captions_file(job_id, owner, fmt), media_type=CAPTION_TYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{job_id}.{fmt}"'})


@router.get("/jobs", summary="Your jobs, newest first")
def get_jobs(key: ReadKey, limit: Annotated[int, Query(ge=1, le=100)] = 20,
             cursor: str | None = None) -> dict[str, object]:
    jobs, next_cursor = list_jobs(key.owner, limit, cursor)
    return {"data": [job_out(job) for job in jobs], "next_cursor": next_cursor}
