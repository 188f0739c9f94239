"""A local OpenID Connect provider for development: `make run` needs no Auth0 tenant.

It is a real provider built on Authlib's server classes (authorization code
grant, PKCE S256 required, nonce required, RS256 ID and access tokens signed
with a key generated at start), so the login path exercised locally is the same
client code that talks to Auth0. Its "sign in as" form accepts any email: it
exists for development only and refuses to be built when `LOCKN_ENV=prod`.
"""

from __future__ import annotations

import html
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import redis
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from backend.core.settings import Settings

DEV_CLIENT_ID = "lockn-dev"
CODE_TTL_S = 120
TOKEN_TTL_S = 3600
SCOPES = "openid profile email"


class DevProviderForbidden(RuntimeError):
    """The development provider was asked for in production."""


@dataclass
class DevClient(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uri: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES.split())

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class DevCode:
    """An issued authorization code, with what the token endpoint must check (PKCE, nonce)."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: dict
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None

    def is_expired(self) -> bool:
        return time.time() - self.auth_time > CODE_TTL_S


class MemoryCodeStore:
    """Codes in this process's memory: enough when one web process serves the app (`make run`)."""

    def __init__(self) -> None:
        self._codes: dict[str, DevCode] = {}

    def save(self, code: DevCode) -> None:
        self._codes[code.code] = code

    def get(self, code: str) -> DevCode | None:
        return self._codes.get(code)

    def delete(self, code: str) -> None:
        self._codes.pop(code, None)

    def nonce_used(self, nonce: str) -> bool:
        return any(c.nonce == nonce for c in self._codes.values())


class RedisCodeStore:
    """Codes in Redis: the authorize and token requests of one sign-in may reach different replicas."""

    PREFIX = "lockn:dev-idp:"

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def save(self, code: DevCode) -> None:
        pipe = self.client.pipeline()
        pipe.set(self.PREFIX + "code:" + code.code, json.dumps(asdict(code)), ex=CODE_TTL_S)
        if code.nonce:
            pipe.set(self.PREFIX + "nonce:" + code.nonce, "1", ex=CODE_TTL_S)
        pipe.execute()

    def get(self, code: str) -> DevCode | None:
        raw = self.client.get(self.PREFIX + "code:" + code)
        return DevCode(**json.loads(raw)) if raw else None

    def delete(self, code: str) -> None:
        self.client.delete(self.PREFIX + "code:" + code)

    def nonce_used(self, nonce: str) -> bool:
        return bool(self.client.exists(self.PREFIX + "nonce:" + nonce))


def code_store(settings: Settings) -> MemoryCodeStore | RedisCodeStore:
    """Redis whenever replicas may share the work, memory for the single-process default."""
    if settings.redis_url:
        from backend.core.redis_client import client_for

        return RedisCodeStore(client_for(settings.redis_url))
    return MemoryCodeStore()


class FormRequest(OAuth2Request):
    """Authlib's request, built from a Starlette request whose form was already read."""

    def __init__(self, request: Request, form: dict[str, str]) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)  # case-insensitive
        self._args, self._form = dict(request.query_params), form
        self.payload = BasicOAuth2Payload({**self._args, **form})

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class DevAuthorizationServer(AuthorizationServer):
    """Authlib's server with the small Starlette glue it asks framework integrations for."""

    def __init__(self, provider: DevProvider) -> None:
        super().__init__(scopes_supported=SCOPES.split())
        self.provider = provider
        self.register_token_generator("default", provider.issue_token)

    def query_client(self, client_id: str) -> DevClient | None:
        return self.provider.client if client_id == self.provider.client.client_id else None

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        """Tokens are self-contained JWTs: nothing to store."""

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def create_json_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(self, status: int, body: object, headers: list[tuple[str, str]]) -> Response:
        if isinstance(body, dict):
            return JSONResponse(body, status_code=status, headers=dict(headers))
        return Response(body, status_code=status, headers=dict(headers))

    def send_signal(self, name: str, *args: object, **kwargs: object) -> None:
        pass


class DevCodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        payload = request.payload.data
        self.server.provider.codes.save(DevCode(
            code, request.client.client_id, payload.get("redirect_uri"), request.scope or "", request.user,
            payload.get("nonce"), payload.get("code_challenge"), payload.get("code_challenge_method")))

    def query_authorization_code(self, code: str, client: DevClient) -> DevCode | None:
        found = self.server.provider.codes.get(code)
        return found if found and found.client_id == client.client_id and not found.is_expired() else None

    def delete_authorization_code(self, authorization_code: DevCode) -> None:
        self.server.provider.codes.delete(authorization_code.code)

    def authenticate_user(self, authorization_code: DevCode) -> dict:
        return authorization_code.user


class DevOpenIDCode(OpenIDCode):
    def __init__(self, provider: DevProvider) -> None:
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return self.provider.codes.nonce_used(nonce)

    def resolve_client_private_key(self, client: DevClient) -> KeySet:
        return KeySet([self.provider.key])

    def get_client_algorithm(self, client: DevClient) -> str:
        return "RS256"

    def get_encode_header(self, client: DevClient) -> dict:
        return {"alg": "RS256", "kid": self.provider.key.kid}

    def get_client_claims(self, client: DevClient) -> dict:
        return {"iss": self.provider.issuer, "aud": [client.client_id], "exp": int(time.time()) + TOKEN_TTL_S}

    def generate_user_info(self, user: dict, scope: str) -> UserInfo:
        return UserInfo(sub=user["sub"], name=user["name"], email=user["email"], picture=user.get("picture"))


class DevProvider:
    """The provider's state: its signing key, its one client, and codes in flight."""

    def __init__(self, settings: Settings) -> None:
        if settings.env == "prod":
            raise DevProviderForbidden("the development identity provider cannot run with LOCKN_ENV=prod")
        self.issuer = f"{settings.base_url}/dev-idp/"
        self.audience = dev_audience(settings)
        self.key = dev_signing_key(settings)
        self.client = DevClient(DEV_CLIENT_ID, dev_client_secret(settings), f"{settings.base_url}/auth/callback")
        self.codes = code_store(settings)
        self.server = DevAuthorizationServer(self)
        self.server.register_grant(DevCodeGrant, [DevOpenIDCode(self), CodeChallenge(required=True)])

    def issue_token(self, grant_type: str, client: DevClient, user: dict | None = None, scope: str | None = None,
                    expires_in: int | None = None, include_refresh_token: bool = True) -> dict:
        """An RS256 JWT access token for LockN's API audience, like Auth0 issues with `audience=`."""
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": user["sub"] if user else client.client_id,
                  "iat": now, "exp": now + TOKEN_TTL_S, "scope": scope or "", "azp": client.client_id}
        access = jwt.encode({"alg": "RS256", "kid": self.key.kid, "typ": "at+jwt"}, claims, self.key)
        return {"token_type": "Bearer", "access_token": access, "expires_in": TOKEN_TTL_S, "scope": scope or ""}

    def metadata(self) -> dict:
        base = self.issuer
        return {"issuer": base, "authorization_endpoint": base + "authorize", "token_endpoint": base + "token",
                "jwks_uri": base + ".well-known/jwks.json", "userinfo_endpoint": base + "userinfo",
                "end_session_endpoint": base + "logout", "response_types_supported": ["code"],
                "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": SCOPES.split(), "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]}


def dev_signing_key(settings: Settings) -> RSAKey:
    """The provider's RSA key, generated once into the data directory (tokens survive a restart)."""
    import json

    path = settings.data_dir / "dev-idp-key.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig"})
        path.write_text(json.dumps(key.as_dict(private=True)))
        path.chmod(0o600)
    return RSAKey.import_key(json.loads(path.read_text()))


def dev_public_jwks(settings: Settings) -> dict:
    return KeySet([dev_signing_key(settings)]).as_dict(private=False)


def dev_client_secret(settings: Settings) -> str:
    """Derived from the session secret, so the provider and the client agree without a setting."""
    import hashlib

    return hashlib.sha256(("lockn-dev-idp:" + settings.session_secret()).encode()).hexdigest()


def dev_audience(settings: Settings) -> str:
    return f"{settings.base_url}/api"


def build_dev_provider_app(settings: Settings) -> FastAPI:
    """The provider as a FastAPI app, mounted at `/dev-idp` by the API."""
    provider = DevProvider(settings)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.provider = provider

    @app.get("/.well-known/openid-configuration")
    def configuration() -> dict:
        return provider.metadata()

    @app.get("/.well-known/jwks.json")
    def jwks() -> dict:
        return KeySet([provider.key]).as_dict(private=False)

    @app.get("/authorize")
    def sign_in_form(request: Request) -> Response:
        try:
            provider.server.get_consent_grant(FormRequest(request, {}), end_user=None)
        except Exception as exc:  # noqa: BLE001 - any invalid request is shown, never raised
            return HTMLResponse(f"<p>Invalid sign-in request: {html.escape(str(exc))}</p>", status_code=400)
        return HTMLResponse(sign_in_page(str(request.url.query)))

    @app.post("/authorize")
    async def sign_in(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        email = form.get("email", "").strip().lower()
        if "@" not in email:
            return HTMLResponse(sign_in_page(str(request.url.query), "Enter an email address."), status_code=400)
        name = form.get("name", "").strip() or email.split("@")[0]
        user = {"sub": f"dev|{email}", "email": email, "name": name,
                "picture": None}
        return provider.server.create_authorization_response(FormRequest(request, {}), grant_user=user)

    @app.post("/token")
    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        return provider.server.create_token_response(FormRequest(request, form))

    @app.get("/logout")
    def logout(returnTo: str = "/") -> RedirectResponse:  # noqa: N803 - Auth0's parameter name
        app_origin = urlsplit(provider.client.redirect_uri)
        wanted = urlsplit(returnTo)
        same_origin = (wanted.scheme, wanted.netloc) == (app_origin.scheme, app_origin.netloc)
        return RedirectResponse(returnTo if same_origin else "/")  # never to another site, however alike

    return app


def sign_in_page(query: str, error: str = "") -> str:
    """The provider's one page: sign in as anyone (development only)."""
    notice = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Sign in — LockN (development)</title>
<style>body{{font-family:system-ui,sans-serif;max-width:380px;margin:12vh auto;padding:0 20px;color:#1c2024}}
label{{display:block;margin:14px 0 4px;font-size:14px}}input{{width:100%;padding:10px;font-size:16px;
box-sizing:border-box;border:1px solid #c8c8d0;border-radius:6px}}button{{margin-top:20px;width:100%;padding:11px;
font-size:16px;background:#6e56cf;color:#fff;border:0;border-radius:6px;cursor:pointer}}
.note{{font-size:13px;color:#60646c}}.error{{color:#c62828}}</style></head><body>
<h1>Sign in to LockN</h1><p class="note">Development identity provider: any email signs in.
Production uses Auth0.</p>{notice}
<form method="post" action="?{html.escape(query)}">
<label for="email">Email</label><input id="email" name="email" type="email" required autocomplete="email">
<label for="name">Name</label><input id="name" name="name" autocomplete="name">
<button type="submit">Sign in</button></form></body></html>"""
