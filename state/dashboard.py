"""State of the dashboard: the user's keys, their usage, the platform's status and its last QA run.

Handlers call `KeyService`, the health and QA-run services directly (never the app's
own HTTP API), and every one re-checks the session first (`AuthState._owner`).
"""

from __future__ import annotations

import math
from datetime import timedelta

import reflex as rx

from backend.core.clock import as_utc, utcnow
from backend.services.status import qa_runs
from backend.services.status.health import service_cards
from backend.services.keys.service import (
    DEFAULT_MAX_CONCURRENT_JOBS, MAX_CONCURRENT_JOBS, SCOPES, ApiKey, InvalidKeyRequest, KeyNotFound, KeySpec,
    KeyStatus, RateLimit, get_key_service,
)
from backend.services.keys.studio_usage import STUDIO_SERIES, studio_series
from state.auth import AuthState, private_page, signed_in

USAGE_DAYS = 30
GRACE_CHOICES = {"now": 0, "1 hour": 3600, "24 hours": 86400}


def whole_number_ticks(top: int, most: int = 5) -> list[int]:
    """Evenly spaced whole-number ticks from 0 to at least `top` (at most `most` of them), each a step of
    1, 2 or 5 × 10ⁿ: a chart of 3 requests reads 0 1 2 3, one of 4,300 characters 0 2,000 4,000 6,000."""
    top = max(top, 1)
    step = 1
    while math.ceil(top / step) > most - 1:
        step = _next_step(step)
    return list(range(0, step * math.ceil(top / step) + 1, step))


def _next_step(step: int) -> int:
    """1 → 2 → 5 → 10 → 20 → 50 …"""
    leading = int(str(step)[0])
    return step * 2 if leading in (1, 5) else step * 5 // 2


def key_lineage(replaces: str | None, replaced_by: str | None, starts: dict[str, str]) -> str:
    """How a rotated key relates to its sibling of the same name, by the start of each key."""
    if replaced_by:
        return f"replaced by {starts.get(replaced_by, 'a newer key')}"
    if replaces:
        return f"replaces {starts.get(replaces, 'an older key')}"
    return ""


def key_row(row: ApiKey, status: KeyStatus, month_requests: int, month_chars: int,
            lineage: str = "") -> dict[str, str]:
    """A key as the table shows it: every value already formatted."""
    quota = f"{month_chars:,} / {row.quota_chars:,} chars" if row.quota_chars else ""
    quota_pct = str(min(100, round(100 * month_chars / row.quota_chars))) if row.quota_chars else "0"
    last_used = as_utc(row.last_used_at)
    rate = f"{RateLimit(row.rate_limit_requests, row.rate_limit_window_s).describe()} · {row.max_concurrent_jobs} at once"
    return {"id": row.id, "name": row.name, "lineage": lineage, "start": row.start + "…", "env": row.env,
            "scopes": ", ".join(row.scopes), "rate": rate,
            "last_used": last_used.strftime("%Y-%m-%d %H:%M") if last_used else "never",
            "month_requests": f"{month_requests:,}", "status": status.replace("_", " "), "quota": quota, "quota_pct": quota_pct}


def rate_in_words(text: str) -> tuple[bool, str]:
    """(whether it parses, what it means or what is wrong): the create dialog says it as the limit is typed."""
    try:
        limit = RateLimit.parse(text or "")
    except InvalidKeyRequest as exc:
        return False, str(exc)
    windows = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
    per = f"a {windows[limit.window_s]}" if limit.window_s in windows else f"every {limit.window_s:,} s"
    return True, f"{limit.requests:,} request{'s' if limit.requests != 1 else ''} {per}"


def qa_run_card(run: qa_runs.QaRun | None) -> dict[str, str]:
    """The last QA run as the status panel shows it (empty when none was recorded)."""
    if run is None:
        return {}
    finished = as_utc(run.finished_at)
    return {"id": run.id, "target": run.target, "trigger": run.trigger,
            "outcome": "passed" if run.passed else "failed",
            "when": finished.strftime("%Y-%m-%d %H:%M UTC") if finished else "",
            "counts": f"{run.passed_count} passed · {run.failed_count} failed · {run.skipped_count} skipped",
            "report_url": f"/api/qa/runs/{run.id}/report" if run.report_path else ""}


class DashboardState(AuthState):
    keys: list[dict[str, str]] = []
    usage: list[dict[str, int | str]] = []
    chart_key: str = "all"
    services: list[dict[str, str]] = []
    #: The newest release QA run against any target (`qa_run_card`); empty when none was recorded.
    qa_run: dict[str, str] = {}
    error: str = ""
    #: The full key, shown once after create or rotate; cleared when its dialog closes.
    revealed_key: str = ""
    create_open: bool = False
    form_scopes: list[str] = ["tts:read", "tts:write"]
    #: The create dialog's rate limit as typed, read back in words (or what is wrong with it).
    rate_ok: bool = True
    rate_hint: str = rate_in_words("60/minute")[1]
    #: Whether the revealed key was copied (the Copy button says "Copied").
    copied: bool = False
    _usage_by_key: dict[str, list[dict]] = {}

    @rx.var
    def scope_names(self) -> list[str]:
        return list(SCOPES)

    @rx.var
    def key_choices(self) -> list[dict[str, str]]:
        """What the usage chart can show, by name: everything, the Studio, or one key."""
        return [{"value": "all", "label": "All keys and the Studio"}, {"value": STUDIO_SERIES, "label": "Studio"}] + \
            [{"value": k["id"], "label": f"{k['name']} ({k['start']})"} for k in self.keys]

    @rx.var
    def request_ticks(self) -> list[int]:
        return whole_number_ticks(max((int(day["requests"]) for day in self.usage), default=0))

    @rx.var
    def char_ticks(self) -> list[int]:
        return whole_number_ticks(max((int(day["chars"]) for day in self.usage), default=0))

    @rx.var
    def usage_is_empty(self) -> bool:
        return not any(int(day["requests"]) for day in self.usage)

    @rx.event
    def load(self):  # type: ignore[no-untyped-def]
        """on_load: profile (or sign-in), then keys, usage and status."""
        self.revealed_key = ""  # shown once: a reload of the page never shows it again, signed in or not
        return self._open()

    @private_page
    def _open(self, owner: str) -> None:
        self._refresh_keys(owner)
        self._refresh_status()

    def _refresh_status(self) -> None:
        self.services = service_cards()
        self.qa_run = qa_run_card(qa_runs.last_run())

    def _refresh_keys(self, owner: str) -> None:
        service = get_key_service()
        service.flush_usage()  # the dashboard shows usage up to this moment
        overview = service.overview(owner, USAGE_DAYS)
        starts = {key.id: key.start + "…" for key in overview.keys}
        successors = {key.rotated_from: key.id for key in overview.keys if key.rotated_from}
        self.keys = [key_row(key, overview.statuses[key.id], *overview.month[key.id],
                             lineage=key_lineage(key.rotated_from, successors.get(key.id), starts))
                     for key in overview.keys]
        self._usage_by_key = {**overview.series, STUDIO_SERIES: studio_series(owner, USAGE_DAYS)}
        self._set_usage()

    def _set_usage(self) -> None:
        chosen = self._usage_by_key.values() if self.chart_key == "all" else \
            [self._usage_by_key.get(self.chart_key, [])]
        totals: dict[str, dict[str, int | str]] = {}
        for days in chosen:
            for day in days:
                entry = totals.setdefault(day["day"], {"day": day["day"][5:], "requests": 0, "chars": 0})
                entry["requests"] = int(entry["requests"]) + day["requests"]
                entry["chars"] = int(entry["chars"]) + day["chars"]
        self.usage = [totals[d] for d in sorted(totals)]

    @rx.event
    def choose_chart(self, key_id: str):  # type: ignore[no-untyped-def]
        self.chart_key = key_id
        self._set_usage()

    @rx.event
    @signed_in
    def refresh_status(self, owner: str, _value: object = None):  # type: ignore[no-untyped-def]
        self._refresh_status()
        return None

    @rx.var
    def concurrency_range(self) -> str:
        return f"1–{MAX_CONCURRENT_JOBS}, default {DEFAULT_MAX_CONCURRENT_JOBS}"

    @rx.event
    def set_create_open(self, value: bool) -> None:
        self.create_open = value
        self.error = ""
        self.rate_ok, self.rate_hint = rate_in_words("60/minute")

    @rx.event
    def check_rate(self, text: str) -> None:
        self.rate_ok, self.rate_hint = rate_in_words(text)

    @rx.event
    def copy_key(self):  # type: ignore[no-untyped-def]
        self.copied = True
        return rx.set_clipboard(self.revealed_key)

    @rx.event
    def toggle_scope(self, scope: str, checked: bool) -> None:
        scopes = [s for s in self.form_scopes if s != scope]
        self.form_scopes = scopes + [scope] if checked else scopes

    @rx.event
    @signed_in
    def create_key(self, owner: str, form: dict):  # type: ignore[no-untyped-def]
        try:
            quota = int(form["quota"]) if str(form.get("quota", "")).strip() else None
            concurrent = int(form["concurrent"]) if str(form.get("concurrent", "")).strip() else \
                DEFAULT_MAX_CONCURRENT_JOBS
            days = int(form["expires_days"]) if str(form.get("expires_days", "")).strip() else None
            spec = KeySpec(str(form.get("name", "")), str(form.get("env", "live")), tuple(self.form_scopes),  # type: ignore[arg-type]
                           RateLimit.parse(str(form.get("rate_limit") or "60/minute")), quota,
                           utcnow() + timedelta(days=days) if days else None, concurrent)
            _, full = get_key_service().create(owner, spec)
        except (InvalidKeyRequest, ValueError) as exc:
            self.error = str(exc) if isinstance(exc, InvalidKeyRequest) else \
                "quota, expiry and concurrent jobs must be whole numbers"
            return None
        self.create_open, self.error, self.revealed_key = False, "", full
        self._refresh_keys(owner)
        return None

    @rx.event
    @signed_in
    def rotate_key(self, owner: str, key_id: str, grace: str):  # type: ignore[no-untyped-def]
        try:
            _, full = get_key_service().rotate(owner, key_id, GRACE_CHOICES.get(grace, 0))
        except (InvalidKeyRequest, KeyNotFound) as exc:
            self.error = str(exc) if isinstance(exc, InvalidKeyRequest) else "that key no longer exists"
            return None
        self.error, self.revealed_key = "", full
        self._refresh_keys(owner)
        return None

    @rx.event
    @signed_in
    def revoke_key(self, owner: str, key_id: str):  # type: ignore[no-untyped-def]
        try:
            get_key_service().revoke(owner, key_id)
        except KeyNotFound:
            self.error = "that key no longer exists"
        self._refresh_keys(owner)
        return None

    @rx.event
    def dismiss_key(self, _open: object = None) -> None:
        """The revealed key's dialog closed (Done, its close button or Escape): the key is gone from the page."""
        self.revealed_key, self.copied = "", False
