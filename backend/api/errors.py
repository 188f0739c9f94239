"""One error shape per API family, installed once on the FastAPI app.

`/api/*` and everything else answer `{"error": {"code", "message"}}`; `/v1/*`
answers OpenAI's envelope `{"error": {"message", "type", "param", "code"}}` so
OpenAI's SDKs show the message. No handler ever returns a stack trace.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.core.request_context import request_id_scope

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
                   str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
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
