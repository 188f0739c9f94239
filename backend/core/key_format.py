"""The API key format: `lk_{env}_{26 random base62}{6 base62 checksum}`.

The checksum (CRC32 of the prefix and random part, in base62, as GitHub's
tokens do) lets a mistyped or truncated key be rejected without touching the
database. Keys are stored only as a digest: HMAC-SHA256 with the server pepper
when one is configured, plain SHA-256 otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from typing import Literal

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 26
CHECKSUM_LENGTH = 6
BODY_LENGTH = RANDOM_LENGTH + CHECKSUM_LENGTH
#: Characters of the random part kept for display (`lk_live_ab12…`).
DISPLAY_CHARS = 4
KeyEnv = Literal["live", "test"]
KEY_ENVS: tuple[KeyEnv, ...] = ("live", "test")
#: Anything shaped like a key, for the log filter (loose on purpose: masks mistyped keys too).
KEY_PATTERN = re.compile(r"lk_(?:live|test)_[0-9A-Za-z]{8,}")
_STRICT = re.compile(rf"lk_(live|test)_([0-9A-Za-z]{{{BODY_LENGTH}}})")


@dataclass(frozen=True)
class ParsedKey:
    env: KeyEnv
    full: str

    @property
    def start(self) -> str:
        return display_start(self.full)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    return "".join(reversed(digits))


def checksum(prefix_and_random: str) -> str:
    return _base62(zlib.crc32(prefix_and_random.encode()), CHECKSUM_LENGTH)


def generate_key(env: KeyEnv) -> str:
    """A new key from the OS's CSPRNG (26 base62 characters: ~154 bits)."""
    random_part = "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    prefix = f"lk_{env}_{random_part}"
    return prefix + checksum(prefix)


def parse_key(candidate: str) -> ParsedKey | None:
    """The key when well-formed with a valid checksum, else None. Constant-time checksum comparison."""
    match = _STRICT.fullmatch(candidate or "")
    if match is None:
        return None
    head, tail = candidate[:-CHECKSUM_LENGTH], candidate[-CHECKSUM_LENGTH:]
    if not hmac.compare_digest(checksum(head), tail):
        return None
    return ParsedKey(env=match.group(1), full=candidate)  # type: ignore[arg-type]


def digest_key(key: str, pepper: str | None) -> str:
    """What the database stores: hex HMAC-SHA256 with the pepper, or SHA-256 without one."""
    if pepper:
        return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(key.encode()).hexdigest()


def display_start(key: str) -> str:
    """The part of a key safe to show and store: `lk_live_ab12`."""
    env = "live" if key.startswith("lk_live_") else "test"
    return f"lk_{env}_" + key[len(f"lk_{env}_"):][:DISPLAY_CHARS]


def mask_keys(text: str) -> str:
    """`text` with every key-shaped string reduced to its display start."""
    return KEY_PATTERN.sub(lambda m: display_start(m.group(0)) + "…", text)
