"""Who is signed in, resolved on the server from the session cookie, on every private action.

The browser never sees a token: the websocket handshake carries the HttpOnly
cookie, and each private handler looks its session up again (`signed_in`, `private_page` below), so a sign-out in
another tab (or an expired session) takes effect at the very next action.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any, TypeVar
from urllib.parse import quote

import reflex as rx

from backend.services.accounts import sessions


class AuthState(rx.State):
    """Base of every private page's state: the signed-in user's public profile, nothing secret."""

    user_name: str = ""
    user_email: str = ""
    user_picture: str = ""

    def _login_session(self) -> sessions.LoginSession | None:
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

    def _signed_in_owner(self, show_profile: bool = False) -> str | None:
        """The signed-in user's id, re-checked now; None (and the profile cleared) when signed out.

        `show_profile` also fills the public profile (name, email, picture) from the session, as a page loads."""
        row = self._login_session()
        if row is None:
            self.user_name = self.user_email = self.user_picture = ""
            return None
        if show_profile:
            self.user_name, self.user_email, self.user_picture = row.name or "", row.email or "", row.picture or ""
        return row.user_id

    def _owner(self) -> str | None:
        """The signed-in user's id, re-checked now; None (and the profile cleared) when signed out."""
        return self._signed_in_owner()

    @rx.var
    def signed_in(self) -> bool:
        return bool(self.user_email or self.user_name)

    @rx.event
    def load_profile(self) -> None:
        """on_load of public pages: show who is signed in, without asking anyone to sign in."""
        self._signed_in_owner(show_profile=True)

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


Handler = TypeVar("Handler", bound=Callable[..., Any])


def _guarded(handler: Handler, show_profile: bool) -> Handler:
    """`handler(self, owner, …)` as an event handler `(self, …)` that re-checks the session first: signed out, the
    browser goes to sign in (and comes back here); signed in, the handler runs with the user's id as `owner`.

    Reflex reads a handler's arguments from its signature and type hints, so both are those of the handler
    without `owner`; sync and async handlers (uploads included) stay what they are."""
    signature = inspect.signature(handler)
    first, owner, *rest = signature.parameters.values()
    assert owner.name == "owner", f"{handler.__qualname__} takes the signed-in owner as its first argument"

    if inspect.iscoroutinefunction(handler):
        @functools.wraps(handler)
        async def guarded(self: AuthState, *args: Any, **kwargs: Any) -> Any:
            if (user := self._signed_in_owner(show_profile)) is None:
                return self._sign_in_redirect()
            return await handler(self, user, *args, **kwargs)
    else:
        @functools.wraps(handler)
        def guarded(self: AuthState, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            if (user := self._signed_in_owner(show_profile)) is None:
                return self._sign_in_redirect()
            return handler(self, user, *args, **kwargs)

    guarded.__signature__ = signature.replace(parameters=[first, *rest])  # type: ignore[attr-defined]
    guarded.__annotations__ = {name: hint for name, hint in handler.__annotations__.items() if name != "owner"}
    return guarded  # type: ignore[return-value]


def signed_in(handler: Handler) -> Handler:
    """A private action (under `@rx.event`): runs for the signed-in user, given as `owner`; else asks to sign in."""
    return _guarded(handler, show_profile=False)


def private_page(handler: Handler) -> Handler:
    """A private page's on_load: as `signed_in`, and it shows the signed-in user's profile."""
    return _guarded(handler, show_profile=True)
