"""How API routes learn who is calling: `require_key` for API-key-only routes, `require_principal`
for routes that also accept a signed-in user's access token (key management).

Both answer failures in the API's error shape with the right status, rate-limit
headers on every keyed response, and `WWW-Authenticate` on 401.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from fastapi import Request, Response

from backend.api.errors import ApiError, rejection
from backend.auth.tokens import InvalidToken, get_token_verifier
from backend.core.metrics import KEY_VERIFICATIONS
from backend.core.request_context import current_facts
from backend.services.accounts import sessions
from backend.services.keys.service import SCOPES, KeyRejected, VerifiedKey, get_key_service

KEY_PREFIX = "lk_"


@dataclass(frozen=True)
class Principal:
    """The caller: an owner, and the key it used (None when it is a signed-in user's token)."""

    owner: str
    scopes: frozenset[str]
    key: VerifiedKey | None = None


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _verified_key(token: str | None, scopes: tuple[str, ...], response: Response) -> VerifiedKey:
    if token is None:
        raise rejection(KeyRejected("malformed", "No API key: send the header Authorization: Bearer lk_…"))
    try:
        key = get_key_service().verify(token, scopes)
    except KeyRejected as exc:
        KEY_VERIFICATIONS.labels(exc.code).inc()
        raise rejection(exc) from None
    KEY_VERIFICATIONS.labels("ok").inc()
    response.headers.update(key.rate.headers())
    note_caller(key.owner, key.id)
    return key


def note_caller(owner: str, key_id: str | None = None) -> None:
    """Whose request this is, for the request log (a request nobody could be named for is not logged)."""
    facts = current_facts()
    if facts is not None:
        facts.owner, facts.key_id = owner, key_id


def _record_error(key: VerifiedKey | None) -> None:
    """A keyed request whose handler failed counts as an error in the key's usage."""
    if key is not None:
        get_key_service().record_usage(key.id, errors=1)


def require_key(*scopes: str) -> Callable[..., AsyncIterator[VerifiedKey]]:
    """A dependency: the verified key holding `scopes`; counts the request, and an error if the handler fails.

    Async on purpose: verification is a few microseconds from the cache, far less than the thread-pool hop
    a sync dependency costs (measured in bench/keys.py). Only a cache miss (once per key per 30 s) or the
    Redis limiter's sub-millisecond round trip touch the network while on the event loop.
    """
    unknown = set(scopes) - set(SCOPES)
    assert not unknown, f"unknown scopes {unknown}"

    async def dependency(request: Request, response: Response) -> AsyncIterator[VerifiedKey]:
        key = _verified_key(bearer_token(request), scopes, response)
        try:
            yield key
        except Exception:
            _record_error(key)
            raise

    return dependency


def require_principal(*scopes: str) -> Callable[..., Iterator[Principal]]:
    """A dependency: an API key holding `scopes`, or a signed-in user's access token (all key scopes)."""

    def dependency(request: Request, response: Response) -> Iterator[Principal]:
        token = bearer_token(request)
        if token is None or token.startswith(KEY_PREFIX):
            key = _verified_key(token, scopes, response)
            principal = Principal(key.owner, key.scopes, key)
        else:
            principal = Principal(_user_from_token(token), frozenset(SCOPES))
            note_caller(principal.owner)
        try:
            yield principal
        except Exception:
            _record_error(principal.key)
            raise

    return dependency


def _user_from_token(token: str) -> str:
    verifier = get_token_verifier()
    if verifier is None:
        raise ApiError(401, "malformed", "Send an API key (Authorization: Bearer lk_…).",
                       headers={"WWW-Authenticate": 'Bearer realm="lockn"'})
    try:
        subject = verifier.verify(token).subject
    except InvalidToken as exc:
        raise ApiError(401, "invalid_token", str(exc), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if sessions.token_of_ended_session(token):
        raise ApiError(401, "invalid_token", "The sign-in this token came from has ended; sign in again.",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return subject


def require_reader(*scopes: str) -> Callable[..., AsyncIterator[str]]:
    """For GET routes a browser loads directly (audio in `<audio>`, downloads): an API key holding
    `scopes`, or the signed-in user's session cookie. Yields the owner. Only safe methods use this:
    the SameSite=Lax cookie is not sent on cross-site subrequests, and nothing here changes state."""
    keyed = require_key(*scopes)

    async def dependency(request: Request, response: Response) -> AsyncIterator[str]:
        if bearer_token(request) is None:
            session = sessions.session_from_cookie(request.cookies.get(sessions.COOKIE_NAME))
            if session is not None:
                note_caller(session.user_id)
                yield session.user_id
                return
        async for key in keyed(request, response):
            yield key.owner

    return dependency
