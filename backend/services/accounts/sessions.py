"""Server-side login sessions: the cookie carries a signed id, the database the rest.

Every private action resolves the session by id, so signing out (or expiry)
takes effect at once in every tab, even on a websocket opened before it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlmodel import Session, select

from backend.core.db import get_engine
from backend.core.models import LoginSession, User, as_utc, utcnow  # LoginSession: also what callers are handed
from backend.core.settings import get_settings
from backend.services.accounts.audit import audit_event

COOKIE_NAME = "lockn_session"


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(get_settings().session_secret(), salt="lockn-session")


def sign(session_id: str) -> str:
    return _serializer().dumps(session_id)


def logout_token(session_id: str) -> str:
    """The token a sign-out form must carry: only a page of this site, which knows the session, has it."""
    return hmac.new(get_settings().session_secret().encode(), f"logout:{session_id}".encode(),
                    hashlib.sha256).hexdigest()


def valid_logout_token(session_id: str, token: str) -> bool:
    return hmac.compare_digest(logout_token(session_id), token)


def unsign(cookie_value: str | None) -> str | None:
    """The session id inside a cookie, or None when it is missing or was not signed by us."""
    if not cookie_value:
        return None
    try:
        value = _serializer().loads(cookie_value)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


def token_digest(token: str) -> str:
    """What a session keeps of its access token: enough to recognise it, nothing that works as one."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def start_session(profile: dict, access_token: str | None, id_token: str | None = None) -> LoginSession:
    """Record a sign-in (and the user) and return the new session.

    No token is stored: the ID token is not needed after sign-in, and the access token is kept as a
    digest only, so that the API can refuse it once this session has ended (`token_of_ended_session`)."""
    now = utcnow()
    session_row = LoginSession(id=secrets.token_urlsafe(32), user_id=profile["sub"], name=profile.get("name"),
                               email=profile.get("email"), picture=profile.get("picture"),
                               access_token=token_digest(access_token) if access_token else None, id_token=None,
                               expires_at=now + timedelta(seconds=get_settings().session_ttl))
    with Session(get_engine(), expire_on_commit=False) as db:
        user = db.get(User, profile["sub"]) or User(id=profile["sub"])
        user.email, user.name, user.last_seen_at = profile.get("email"), profile.get("name"), now
        db.add(user)
        db.add(session_row)
        db.add(audit_event(profile["sub"], "session.signed_in", None, profile.get("email")))
        db.commit()
    return session_row


def active_session(session_id: str | None) -> LoginSession | None:
    """The session if it exists, is not revoked and has not expired."""
    if not session_id:
        return None
    with Session(get_engine()) as db:
        row = db.get(LoginSession, session_id)
    if row is None or row.revoked_at is not None or as_utc(row.expires_at) <= utcnow():
        return None
    return row


def token_of_ended_session(access_token: str) -> bool:
    """Whether `access_token` was issued to a LockN sign-in that has since ended (signed out or expired)."""
    with Session(get_engine()) as db:
        rows = db.exec(select(LoginSession).where(LoginSession.access_token == token_digest(access_token))).all()
    return bool(rows) and not any(active_session(row.id) for row in rows)


def session_from_cookie(cookie_value: str | None) -> LoginSession | None:
    return active_session(unsign(cookie_value))


def end_session(session_id: str | None) -> None:
    """Sign out: the session stops working everywhere at once."""
    if not session_id:
        return
    with Session(get_engine()) as db:
        row = db.get(LoginSession, session_id)
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
            db.add(row)
            db.add(audit_event(row.user_id, "session.signed_out"))
            db.commit()
