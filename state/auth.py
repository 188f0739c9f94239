"""Who is signed in, resolved on the server from the session cookie, on every private action.

The browser never sees a token: the websocket handshake carries the HttpOnly
cookie, and each private handler looks its session up again, so a sign-out in
another tab (or an expired session) takes effect at the very next action.
"""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from urllib.parse import quote

import reflex as rx

from backend.core.models import LoginSession
from backend.services.accounts import sessions


class AuthState(rx.State):
    """Base of every private page's state: the signed-in user's public profile, nothing secret."""

    user_name: str = ""
    user_email: str = ""
    user_picture: str = ""

    def _login_session(self) -> LoginSession | None:
        cookie = SimpleCookie()
        try:
            cookie.load(self.router.headers.cookie or "")
        except Exception:  # noqa: BLE001 - a malformed Cookie header means "not signed in"
            return None
        morsel = cookie.get(sessions.COOKIE_NAME)
        return sessions.session_from_cookie(morsel.value if morsel else None)

    def _sign_in_redirect(self) -> rx.event.EventSpec:
        path = self.router.url.path or "/dashboard"
        # A backend route: client-side navigation would show the frontend's 404 (FIELD-NOTES, "Login").
        return rx.call_script(f"window.location.replace('/auth/login?next={quote(path, safe='/')}')")

    def _owner(self) -> str | None:
        """The signed-in user's id, re-checked now; None (and the profile cleared) when signed out."""
        row = self._login_session()
        if row is None:
            self.user_name = self.user_email = self.user_picture = ""
            return None
        return row.user_id

    @rx.var
    def signed_in(self) -> bool:
        return bool(self.user_email or self.user_name)

    def _load_profile(self) -> bool:
        """Fill the public profile from the session; False when nobody is signed in."""
        row = self._login_session()
        if row is None:
            self.user_name = self.user_email = self.user_picture = ""
            return False
        self.user_name, self.user_email, self.user_picture = row.name or "", row.email or "", row.picture or ""
        return True

    @rx.event
    def load_profile(self) -> None:
        """on_load of public pages: show who is signed in, without asking anyone to sign in."""
        self._load_profile()

    @rx.event
    def sign_out(self):  # type: ignore[no-untyped-def]
        """Submit the sign-out form (a POST carrying the session's logout token; a GET only asks)."""
        row = self._login_session()
        if row is None:
            return rx.call_script("window.location.replace('/')")
        token = json.dumps(sessions.logout_token(row.id))
        return rx.call_script(
            "(() => { const form = document.createElement('form'); form.method = 'POST'; "
            "form.action = '/auth/logout'; const field = document.createElement('input'); field.type = 'hidden'; "
            f"field.name = 'csrf'; field.value = {token}; form.appendChild(field); document.body.appendChild(form); "
            "form.submit(); })()")
