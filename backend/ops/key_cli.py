"""`python -m backend.ops.cli keys …`: administer API keys from a shell (the operator's tool).

Output is for people by default and one JSON object per call with `--json`.
Errors print one sentence to stderr and exit 2 (bad input) or 1 (not found).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta

from backend.core.models import ApiKey, utcnow
from backend.services.accounts.audit import actor_scope
from backend.services.keys.service import (
    DEFAULT_MAX_CONCURRENT_JOBS, SCOPES, InvalidKeyRequest, KeyNotFound, KeyService, KeySpec, KeyStatus, RateLimit, get_key_service,
)

EXIT_NOT_FOUND, EXIT_BAD_INPUT = 1, 2
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def add_key_commands(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="create, list, rotate and revoke API keys")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--owner", required=True, help="the owner's identity (Auth0 `sub`)")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="tts:read,tts:write", help=f"comma-separated: {', '.join(SCOPES)}")
    create.add_argument("--env", choices=("live", "test"), default="live")
    create.add_argument("--rate-limit", default="60/minute", help="e.g. 60/minute, 10/second, 1000/hour")
    create.add_argument("--quota-chars", type=int, help="characters per calendar month")
    create.add_argument("--max-concurrent", type=int, default=DEFAULT_MAX_CONCURRENT_JOBS,
                        help="jobs queued or running at once (default %(default)s)")
    create.add_argument("--expires-in", help="e.g. 3600s, 90m, 12h, 30d, 2w")
    listing = sub.add_parser("list", help="list an owner's keys (never the keys themselves)")
    listing.add_argument("--owner", required=True)
    revoke = sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("id")
    rotate = sub.add_parser("rotate", help="replace a key; print the new one once")
    rotate.add_argument("id")
    rotate.add_argument("--grace", type=int, default=0, help="seconds the old key keeps working (max 86400)")
    for parser in (create, listing, revoke, rotate):
        parser.add_argument("--json", action="store_true", help="print one JSON object")


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise InvalidKeyRequest(f"duration {text!r} is not like 3600s, 90m, 12h, 30d or 2w", "expires_in")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def describe(row: ApiKey, status: KeyStatus) -> dict:
    return {"id": row.id, "name": row.name, "owner": row.owner, "env": row.env, "start": row.start + "…",
            "status": status,
            "scopes": row.scopes, "rate_limit": f"{row.rate_limit_requests}/{row.rate_limit_window_s}s",
            "quota_chars": row.quota_chars, "max_concurrent_jobs": row.max_concurrent_jobs,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            "rotated_from": row.rotated_from}


def run_key_command(args: argparse.Namespace, service: KeyService | None = None) -> int:
    service = service or get_key_service()
    try:
        with actor_scope("operator"):  # the audit trail names the admin CLI as who did it
            result = _dispatch(args, service)
    except InvalidKeyRequest as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyNotFound as exc:
        print(f"error: no key with id {exc.args[0]!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    finally:
        service.close()
    _print(result, args.json)
    return 0


def _dispatch(args: argparse.Namespace, service: KeyService) -> dict:
    if args.keys_command == "create":
        spec = KeySpec(args.name, args.env, tuple(s.strip() for s in args.scopes.split(",") if s.strip()),
                       RateLimit.parse(args.rate_limit), args.quota_chars,
                       utcnow() + parse_duration(args.expires_in) if args.expires_in else None, args.max_concurrent)
        row, full = service.create(args.owner, spec)
        return {**describe(row, service.status(row)), "key": full}
    if args.keys_command == "list":
        return {"keys": [describe(row, status) for row, status in _all_keys(service, args.owner)]}
    owner = service.owner_of(args.id)
    if args.keys_command == "revoke":
        row = service.revoke(owner, args.id)
        return describe(row, service.status(row))
    row, full = service.rotate(owner, args.id, args.grace)
    return {**describe(row, service.status(row)), "key": full, "old_key_valid_for_s": args.grace}


def _all_keys(service: KeyService, owner: str) -> list[tuple[ApiKey, KeyStatus]]:
    rows, cursor = [], None
    while True:
        page = service.list(owner, 100, cursor)
        rows += [(row, page.statuses[row.id]) for row in page.keys]
        if not (cursor := page.next_cursor):
            return rows


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    if "keys" in result:
        for key in result["keys"]:
            print(f"{key['id']}  {key['start']:<14} {key['status']:<8} {','.join(key['scopes']):<30} {key['name']}")
        print(f"{len(result['keys'])} key(s)")
        return
    for name, value in result.items():
        if name != "key":
            print(f"{name:>13}: {value}")
    if "key" in result:
        print(f"\n{result['key']}\n\nThis is the only time the key is shown. Store it somewhere safe now.")
