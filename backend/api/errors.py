"""One error shape per API family, installed once on the FastAPI app.

`/api/*` and everything else answer `{"error": {"code", "message"}}`; `/v1/*`
answers OpenAI's envelope `{"error": {"message", "type", "param", "code"}}` so
OpenAI's SDKs show the message. No handler ever returns a stack trace.

A route calls a service and leaves its refusals alone: `SERVICE_ERRORS` says, once for every route, which
status and code each refusal is answered with.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.core.errors import first_line
from backend.core.request_context import request_id_scope
from backend.services.accounts.audit import InvalidAuditQuery
from backend.services.accounts.request_log import InvalidLogQuery
from backend.services.common.errors import ServiceUnavailable
from backend.services.jobs.admission import Overloaded, TooFast, TooManyConcurrent
from backend.services.jobs.audio import JobFailed
from backend.services.jobs.batches import BatchNotDone, BatchNotFound, InvalidBatch
from backend.services.jobs.service import CaptionsUnavailable, InvalidJobRequest, JobNotFound
from backend.services.keys.service import InvalidKeyRequest, KeyForbidden, KeyNotFound, KeyRejected
from backend.services.keys.studio_usage import StudioQuotaReached
from backend.services.status.qa_runs import QaRunNotFound
from backend.services.voices.service import VoiceNotFound, VoiceRejected
from backend.services.webhooks.service import InvalidWebhook, NotResendable, SendingTooFast, WebhookNotFound

logger = logging.getLogger("lockn.api")

#: Status code → machine-readable code for errors raised without one.
DEFAULT_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                 422: "invalid_request", 429: "rate_limited", 503: "unavailable"}


class ApiErrorBody(BaseModel):
    code: str
    message: str


class ApiErrorEnvelope(BaseModel):
    """The error shape of `/api/*` (and everything outside `/v1`)."""

    error: ApiErrorBody
    #: The request's id (also its `X-Request-Id` header): what to quote when asking what went wrong.
    request_id: str | None = None


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorEnvelope(BaseModel):
    """OpenAI's error shape, answered on `/v1/*` (plus the request's id beside it, which OpenAI's SDK ignores)."""

    error: OpenAIErrorBody
    request_id: str | None = None


#: Every failure status the API answers, and what it means to a client.
ERROR_STATUSES: dict[int, str] = {
    400: "The request is malformed", 401: "No valid API key or session", 403: "The key lacks a scope",
    404: "No such resource among yours", 409: "The resource is in a state that forbids this",
    413: "The request body is too large", 422: "A field is invalid; the message names it",
    429: "Rate limit or quota reached; see Retry-After", 503: "A dependency is down; retry after Retry-After",
}


def error_responses(envelope: type[BaseModel] = ApiErrorEnvelope) -> dict[int | str, dict]:
    """OpenAPI documentation of every error status in `envelope`'s shape; routers declare it once."""
    return {status: {"model": envelope, "description": text} for status, text in ERROR_STATUSES.items()}


class ApiError(Exception):
    """A failure a client can act on: raised by routers and services, rendered by the handlers below."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param, self.headers = status, code, message, param, headers


#: LockN's codes as OpenAI spells them on `/v1` (code, type), where OpenAI has its own. Too many jobs at once
#: keeps LockN's code (OpenAI has none for it; its type is the rate limit's, `requests`): the fix differs from a
#: rate limit's (wait for a job to finish, not for the window), and the README promises the code on every path.
OPENAI_CODES = {"rate_limited": ("rate_limit_exceeded", "requests"),
                "too_many_concurrent_requests": ("too_many_concurrent_requests", "requests"),
                "quota_exceeded": ("insufficient_quota", "insufficient_quota")}


def error_response(request: Request, error: ApiError) -> JSONResponse:
    """Render `error` in the envelope the request's path family expects."""
    if request.url.path.startswith("/v1/"):
        kind = "invalid_request_error" if error.status < 500 else "server_error"
        code, kind = OPENAI_CODES.get(error.code, (error.code, kind))
        body = {"error": {"message": error.message, "type": kind, "param": error.param, "code": code}}
    else:
        body = {"error": {"code": error.code, "message": error.message}}
    # Beside the envelope (whose fields OpenAI's SDK and LockN's contract fix): the id to quote when asking why.
    request_id = getattr(request.state, "request_id", None)
    body["request_id"] = request_id
    if (facts := getattr(request.state, "facts", None)) is not None:
        facts.error_code = error.code  # LockN's code, also where /v1 spells it OpenAI's way
    headers = {**(error.headers or {}), **({"X-Request-Id": request_id} if request_id else {})}
    return JSONResponse(body, status_code=error.status, headers=headers)  # also a 500, answered outside the middleware


class Answer(NamedTuple):
    """How the API answers one kind of service refusal."""

    status: int
    code: str
    #: None: the exception's own words; else a template given the id the exception names (`{id!r}`).
    message: str | None = None


#: Every refusal a service raises to a route, and its answer. An exception that carries its own `status` or
#: `code` (a voice upload's, a batch file's, a key's grant) is answered with those: the service knew which it was.
SERVICE_ERRORS: dict[type[Exception], Answer] = {
    JobNotFound: Answer(404, "not_found", "No job {id!r} among yours."),
    VoiceNotFound: Answer(404, "not_found", "No voice {id!r} among yours."),
    KeyNotFound: Answer(404, "not_found", "No key {id!r} among yours."),  # another owner's key: a plain 404
    BatchNotFound: Answer(404, "batch_not_found", "No such batch among yours."),
    WebhookNotFound: Answer(404, "webhook_not_found", "No such webhook endpoint or delivery."),
    QaRunNotFound: Answer(404, "not_found", "No QA report for run {id!r}."),
    InvalidJobRequest: Answer(422, "invalid_request"),
    VoiceRejected: Answer(422, "invalid_request"),
    InvalidKeyRequest: Answer(422, "invalid_request"),
    InvalidBatch: Answer(422, "invalid_request"),
    InvalidWebhook: Answer(422, "invalid_request"),
    InvalidLogQuery: Answer(422, "invalid_request"),
    InvalidAuditQuery: Answer(422, "invalid_request"),
    KeyForbidden: Answer(403, "forbidden"),
    BatchNotDone: Answer(409, "batch_not_done"),
    NotResendable: Answer(409, "not_resendable"),
    CaptionsUnavailable: Answer(409, "no_captions"),
    TooFast: Answer(429, "rate_limited"),
    SendingTooFast: Answer(429, "rate_limited"),
    TooManyConcurrent: Answer(429, "too_many_concurrent_requests"),
    StudioQuotaReached: Answer(429, "quota_exceeded"),  # a signed-in user without a key (the Studio's session)
    ServiceUnavailable: Answer(503, "unavailable"),
    Overloaded: Answer(503, "overloaded"),
    JobFailed: Answer(500, "synthesis_failed"),
}
#: Refusals about one field that are answered unlike the rest of their kind.
BY_FIELD: dict[tuple[type[Exception], str], Answer] = {
    (InvalidJobRequest, "voice"): Answer(404, "voice_not_found"),  # it names something that is not there
    (InvalidKeyRequest, "id"): Answer(409, "conflict"),  # the key exists; its state forbids the change
    (JobFailed, "text"): Answer(422, "unspeakable_text"),  # the text gave no audio: the request's doing
}
#: The service's field names as OpenAI's speech request names them.
OPENAI_FIELDS = {"text": "input", "format": "response_format"}


def rejection(exc: KeyRejected) -> ApiError:
    """A key that failed verification (or its quota, checked again as characters are reserved)."""
    headers = dict(exc.headers or {})
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="lockn"'
    return ApiError(exc.status, exc.code, exc.message, headers=headers)


def refusal(exc: Exception, openai: bool = False) -> ApiError:
    """A service's refusal (a type of `SERVICE_ERRORS`) as the API error it is answered with.

    With `openai` (the `/v1` routes) a 422 is a 400 and a field is named as OpenAI's request names it.
    """
    if isinstance(exc, KeyRejected):
        return rejection(exc)
    kind = next(kind for kind in type(exc).__mro__ if kind in SERVICE_ERRORS)
    field: str | None = getattr(exc, "field", None)
    answer = BY_FIELD.get((kind, field or ""))
    if answer is None:
        default = SERVICE_ERRORS[kind]
        answer = Answer(getattr(exc, "status", None) or default.status, getattr(exc, "code", None) or default.code,
                        default.message)
    message = answer.message.format(id=exc.args[0] if exc.args else "") if answer.message else str(exc)
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if openai:
        field = OPENAI_FIELDS.get(field, field) if field else None
        answer = answer._replace(status=400) if answer.status == 422 else answer
    return ApiError(answer.status, answer.code, message, param=field, headers=headers)


#: Which part is down, by the exception its client raises; a person can act on the name.
OUTAGE_NAMES: tuple[tuple[type[Exception], str], ...] = (
    (redis.RedisError, "the broker (Redis)"),
    (BrokerError, "the broker (Redis)"),
    (DBAPIError, "the database"),
)


def dependency_outage(request: Request, exc: Exception) -> ApiError:
    """A dependency failed mid-request: 503 with its name, never a 500 or a stack trace.

    Services roll their transactions back on the way out, so nothing half-written stays behind.
    """
    name = next((label for kind, label in OUTAGE_NAMES if isinstance(exc, kind)), "a dependency")
    logger.warning("%s unreachable on %s %s: %s", name, request.method, request.url.path,
                   first_line(exc, limit=200))
    return ApiError(503, "unavailable", f"{name[0].upper()}{name[1:]} is unreachable; try again in a moment.",
                    headers={"Retry-After": "5"})


def install_error_handlers(app: FastAPI) -> None:
    """Route every kind of failure through `error_response`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = DEFAULT_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(request, ApiError(exc.status_code, code, message, headers=exc.headers))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return error_response(request, ApiError(400, "invalid_request", "The request body is not valid JSON."))
        field = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        message = f"{field}: {first.get('msg', 'invalid value')}" if field else first.get("msg", "invalid request")
        status = 400 if request.url.path.startswith("/v1/") else 422  # OpenAI answers bad bodies with 400
        return error_response(request, ApiError(status, "invalid_request", message, param=field))

    async def _refused(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, refusal(exc, openai=request.url.path.startswith("/v1/")))

    for kind in (*SERVICE_ERRORS, KeyRejected):  # a route calls a service and leaves its refusals to these
        app.add_exception_handler(kind, _refused)

    @app.exception_handler(redis.RedisError)
    @app.exception_handler(BrokerError)
    @app.exception_handler(DBAPIError)
    async def _dependency_down(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, dependency_outage(request, exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Answered by Starlette's outermost layer, after the request's own scope ended: tag the line again.
        with request_id_scope(getattr(request.state, "request_id", None)):
            logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, ApiError(500, "internal_error", "Something went wrong on our side."))
