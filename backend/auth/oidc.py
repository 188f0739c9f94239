"""The login flow (`/auth/login`, `/auth/callback`, `/auth/logout`): OpenID Connect with Authlib's client.

Authorization code + PKCE (S256) + state + nonce, against Auth0 in production or
the development provider otherwise: the same code path either way. Authlib
keeps the transaction in a short-lived SameSite=Lax cookie on `/auth` only;
the callback validates the ID token (Authlib, joserfc underneath) and the access
token (`backend.auth.tokens`), stores a server-side session and sets LockN's own
signed, HttpOnly session cookie. Every failure is a page that says what happened.
"""

from __future__ import annotations

import html
import warnings
from urllib.parse import urlencode, urlsplit

from authlib.deprecate import AuthlibDeprecationWarning

# Authlib's Starlette client is built on its httpx integration, which warns on import that it will move to
# `httpx2`: a note for Authlib's users (us, pinned), nothing a person starting LockN could act on.
warnings.filterwarnings("ignore", message="The httpx module is deprecated", category=AuthlibDeprecationWarning)

from authlib.integrations.base_client.errors import OAuthError  # noqa: E402
from authlib.integrations.starlette_client import OAuth  # noqa: E402
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from joserfc.errors import JoseError
from starlette.middleware.sessions import SessionMiddleware

from backend.auth.tokens import InvalidToken, get_token_verifier
from backend.services.accounts import sessions
from backend.core.settings import Settings

DEFAULT_NEXT = "/dashboard"
TRANSACTION_MAX_AGE_S = 600
SCOPE = "openid profile email"


def safe_next(candidate: str | None) -> str:
    """A same-site path to return to after sign-in; anything else (other hosts, `//x`, `\\x`) is ignored."""
    if not candidate or not candidate.startswith("/") or candidate.startswith(("//", "/\\")) or "\\" in candidate:
        return DEFAULT_NEXT
    parts = urlsplit(candidate)
    return candidate if not parts.scheme and not parts.netloc else DEFAULT_NEXT


def provider_settings(settings: Settings) -> dict[str, str]:
    """Issuer, client credentials and API audience of the configured identity provider."""
    if settings.identity_provider == "dev":
        from backend.auth.dev_provider import DEV_CLIENT_ID, dev_audience, dev_client_secret

        return {"issuer": f"{settings.base_url}/dev-idp/", "client_id": DEV_CLIENT_ID,
                "client_secret": dev_client_secret(settings), "audience": dev_audience(settings)}
    return {"issuer": f"https://{settings.auth0_domain}/", "client_id": settings.auth0_client_id or "",
            "client_secret": settings.auth0_client_secret.get_secret_value() if settings.auth0_client_secret else "",
            "audience": settings.auth0_audience or ""}


def error_page(title: str, detail: str, status: int = 400) -> HTMLResponse:
    body = (f"<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>{html.escape(title)} — LockN</title><body style='font-family:system-ui;max-width:520px;"
            f"margin:12vh auto;padding:0 20px'><h1>{html.escape(title)}</h1><p>{html.escape(detail)}</p>"
            f"<p><a href='/auth/login'>Try signing in again</a> · <a href='/'>Home</a></p></body>")
    return HTMLResponse(body, status_code=status)


def logout_page(token: str) -> HTMLResponse:
    """Asks before signing out, with the form that does it (what the app's Sign out button submits itself)."""
    body = ("<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            "<title>Sign out — LockN</title><body style='font-family:system-ui;max-width:520px;margin:12vh auto;"
            "padding:0 20px'><h1>Sign out of LockN?</h1><form method=post action='/auth/logout'>"
            f"<input type=hidden name=csrf value='{html.escape(token)}'><button type=submit>Sign out</button> "
            "<a href='/dashboard'>Stay signed in</a></form></body>")
    return HTMLResponse(body)


def build_auth_app(settings: Settings) -> FastAPI:
    """The `/auth` sub-app: its own session middleware holds only the sign-in transaction."""
    provider = provider_settings(settings)
    oauth = OAuth()
    oauth.register("idp", client_id=provider["client_id"], client_secret=provider["client_secret"],
                   server_metadata_url=provider["issuer"] + ".well-known/openid-configuration",
                   client_kwargs={"scope": SCOPE, "code_challenge_method": "S256"})
    secure = settings.base_url.startswith("https://")
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=settings.session_secret(), session_cookie="lockn_oidc",
                       max_age=TRANSACTION_MAX_AGE_S, same_site="lax", https_only=secure, path="/auth")

    @app.get("/login")
    async def login(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the URL's name
        request.session["next"] = safe_next(next)
        try:
            return await oauth.idp.authorize_redirect(request, f"{settings.base_url}/auth/callback",
                                                      audience=provider["audience"])
        except Exception:  # noqa: BLE001 - the provider is unreachable or misconfigured
            return error_page("Sign-in is unavailable", "The identity provider could not be reached. "
                              "Try again in a moment.", status=503)

    @app.get("/callback")
    async def callback(request: Request) -> Response:
        if error := request.query_params.get("error"):
            return error_page("Sign-in was cancelled", request.query_params.get("error_description") or error)
        try:
            token = await oauth.idp.authorize_access_token(request)
            profile = dict(token["userinfo"])
            access_token = token.get("access_token")
            if provider["audience"]:
                verifier = get_token_verifier()
                if verifier is not None and verifier.verify(access_token).subject != profile["sub"]:
                    raise InvalidToken("the access token belongs to someone else")
        except (OAuthError, JoseError, InvalidToken, KeyError, ValueError) as exc:
            return error_page("Sign-in failed", f"The identity provider's answer was refused: {exc}")
        row = sessions.start_session(profile, access_token)
        response = RedirectResponse(request.session.pop("next", DEFAULT_NEXT), status_code=303)
        response.set_cookie(sessions.COOKIE_NAME, sessions.sign(row.id), max_age=settings.session_ttl,
                            httponly=True, samesite="lax", secure=secure, path="/")
        return response

    @app.get("/logout")
    async def confirm_logout(request: Request) -> Response:
        """A link (or another site) cannot sign anyone out: a GET only asks, the form below does it."""
        session_id = sessions.unsign(request.cookies.get(sessions.COOKIE_NAME))
        if sessions.active_session(session_id) is None:
            return RedirectResponse(f"{settings.base_url}/", status_code=303)
        return logout_page(sessions.logout_token(session_id or ""))

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session_id = sessions.unsign(request.cookies.get(sessions.COOKIE_NAME))
        token = str((await request.form()).get("csrf", ""))
        if session_id and not sessions.valid_logout_token(session_id, token):
            return error_page("Sign-out refused", "The sign-out form did not come from this site.", status=403)
        sessions.end_session(session_id)
        return_to = f"{settings.base_url}/"
        if settings.identity_provider == "auth0":
            target = f"https://{settings.auth0_domain}/v2/logout?" + urlencode(
                {"client_id": provider["client_id"], "returnTo": return_to})
        else:
            target = provider["issuer"] + "logout?" + urlencode({"returnTo": return_to})
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(sessions.COOKIE_NAME, path="/")
        return response

    return app
