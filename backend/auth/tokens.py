"""Validation of the identity provider's JWT access tokens (Auth0 in production).

RS256 only (an `alg: none` or HS256-confusion token is refused before any key
is consulted), checked against the provider's JWKS with issuer, audience and
expiry. The JWKS is cached and fetched again when a token names an unknown
`kid` (key rotation), at most once per `REFRESH_COOLDOWN_S`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from backend.core.settings import get_settings

ALGORITHMS = ["RS256"]
REFRESH_COOLDOWN_S = 30.0


class InvalidToken(Exception):
    """The token is not one we accept; the message is safe to show."""


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    scopes: frozenset[str]
    claims: dict


class AccessTokenVerifier:
    def __init__(self, issuer: str, audience: str, fetch_jwks: Callable[[], dict]) -> None:
        self.issuer, self.audience, self._fetch_jwks = issuer, audience, fetch_jwks
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def _key_set(self, kid: str | None) -> KeySet:
        with self._lock:
            known = self._keys is not None and (kid is None or any(k.kid == kid for k in self._keys.keys))
            stale = time.monotonic() - self._fetched_at > REFRESH_COOLDOWN_S
            if self._keys is None or (not known and stale):
                self._keys = KeySet.import_key_set(self._fetch_jwks())
                self._fetched_at = time.monotonic()
            return self._keys

    def verify(self, token: str) -> TokenClaims:
        try:
            header = extract_compact(token.encode()).protected
            if header.get("alg") not in ALGORITHMS:
                raise InvalidToken("the token is not signed with RS256")
            decoded = jwt.decode(token, self._key_set(header.get("kid")), algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.issuer},
                                  aud={"essential": True, "value": self.audience},
                                  exp={"essential": True}, sub={"essential": True}).validate(decoded.claims)
        except InvalidToken:
            raise
        except (JoseError, ValueError, KeyError, httpx.HTTPError) as exc:
            raise InvalidToken(f"the access token was refused ({type(exc).__name__})") from None
        claims = decoded.claims
        return TokenClaims(str(claims["sub"]), frozenset(str(claims.get("scope", "")).split()), claims)


def _fetch_jwks(url: str) -> Callable[[], dict]:
    return lambda: httpx.get(url, timeout=5).raise_for_status().json()


@lru_cache(maxsize=1)
def get_token_verifier() -> AccessTokenVerifier | None:
    """The verifier for the configured provider: Auth0's JWKS over HTTPS, or the development provider's key."""
    settings = get_settings()
    if settings.identity_provider == "dev":
        from backend.auth.dev_provider import dev_audience, dev_public_jwks

        # Read from disk, not over HTTP: the provider runs in this very process.
        return AccessTokenVerifier(f"{settings.base_url}/dev-idp/", dev_audience(settings),
                                   lambda: dev_public_jwks(settings))
    if not settings.auth0_audience:
        return None
    issuer = f"https://{settings.auth0_domain}/"
    return AccessTokenVerifier(issuer, settings.auth0_audience, _fetch_jwks(issuer + ".well-known/jwks.json"))
