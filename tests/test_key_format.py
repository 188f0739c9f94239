"""The key format: checksum catches typos and truncation before any database lookup."""

from __future__ import annotations

import re

from backend.core.key_format import digest_key, display_start, generate_key, mask_keys, parse_key


def test_generated_keys_have_the_documented_shape() -> None:
    for env in ("live", "test"):
        key = generate_key(env)
        assert re.fullmatch(rf"lk_{env}_[0-9A-Za-z]{{32}}", key)
        parsed = parse_key(key)
        assert parsed is not None and parsed.env == env
    assert len({generate_key("live") for _ in range(1000)}) == 1000


def test_any_single_character_typo_or_truncation_is_malformed() -> None:
    key = generate_key("live")
    assert parse_key(key[:-1]) is None and parse_key(key + "x") is None
    for position in range(len("lk_live_"), len(key)):
        replacement = "a" if key[position] != "a" else "b"
        assert parse_key(key[:position] + replacement + key[position + 1:]) is None, position
    assert parse_key(key.replace("lk_live_", "lk_test_")) is None, "the env is covered by the checksum"
    assert parse_key("") is None and parse_key("Bearer " + key) is None


def test_digest_depends_on_the_pepper_and_never_contains_the_key() -> None:
    key = generate_key("test")
    plain, peppered = digest_key(key, None), digest_key(key, "server-pepper")
    assert len(plain) == len(peppered) == 64 and plain != peppered
    assert key[8:] not in plain + peppered


def test_display_start_and_masking_keep_only_the_prefix() -> None:
    key = generate_key("live")
    assert display_start(key) == key[:12]
    masked = mask_keys(f"user sent {key} twice: {key}")
    assert key not in masked and masked.count(key[:12] + "…") == 2
