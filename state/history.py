"""The dashboard's account history: the signed-in user's requests (filtered, a row opened) and their activity."""

from __future__ import annotations

from datetime import datetime, timedelta

import reflex as rx

from backend.core.clock import as_utc, utcnow
from backend.services.accounts.audit import ACTIONS, AuditEvent, owner_activity
from backend.services.accounts.request_log import (
    STATUS_CLASSES, InvalidLogQuery, LogFilter, RequestLog, owner_log, owner_routes,
)
from state.auth import signed_in
from state.dashboard import DashboardState

LOG_PAGE = 20
#: The dashboard's time filter: label → how far back.
TIME_RANGES = {"any time": None, "last hour": timedelta(hours=1), "last 24 hours": timedelta(days=1),
               "last 7 days": timedelta(days=7)}


def log_row(row: RequestLog, key_names: dict[str, str]) -> dict[str, str]:
    """A request as the log table shows it, every value already formatted; the details for its dialog too."""
    created: datetime = as_utc(row.created_at)
    return {
        "id": row.id, "request_id": row.request_id, "when": created.strftime("%Y-%m-%d %H:%M:%S"),
        "method": row.method, "route": row.route, "status": str(row.status), "status_class": f"{row.status // 100}xx",
        "key": key_names.get(row.key_id or "", row.key_id or "signed-in session"),
        "latency": f"{row.latency_ms:,.0f} ms", "error_code": row.error_code or "",
        "job_id": row.job_id or "", "chars": f"{row.chars:,}" if row.chars is not None else "",
        "audio": f"{row.audio_seconds:.1f} s" if row.audio_seconds is not None else "",
        "client": row.client or "", "user_agent": row.user_agent or "",
    }


#: The request log's filters a person can change, each kept in `log_<name>`.
LOG_FILTERS = ("key", "status", "route", "since")


class RequestLogState(DashboardState):
    log_rows: list[dict[str, str]] = []
    log_cursor: str = ""
    log_key: str = "all"
    log_status: str = "all"
    log_search: str = ""
    log_route: str = "all"
    log_since: str = "any time"
    log_routes: list[str] = []
    log_error: str = ""
    opened: dict[str, str] = {}

    @rx.var
    def log_key_choices(self) -> list[dict[str, str]]:
        return [{"value": "all", "label": "All keys and sessions"}] + \
            [{"value": k["id"], "label": f"{k['name']} ({k['start']})"} for k in self.keys]

    @rx.var
    def log_status_choices(self) -> list[str]:
        return ["all", *STATUS_CLASSES]

    @rx.var
    def log_route_choices(self) -> list[str]:
        return ["all", *self.log_routes]

    @rx.var
    def log_time_choices(self) -> list[str]:
        return list(TIME_RANGES)

    def _filter(self) -> LogFilter:
        back = TIME_RANGES.get(self.log_since)
        return LogFilter(key_id=None if self.log_key == "all" else self.log_key,
                         status_class=None if self.log_status == "all" else self.log_status,
                         route=None if self.log_route == "all" else self.log_route,
                         since=utcnow() - back if back else None,
                         request_id=self.log_search.strip() or None)

    def _load(self, cursor: str | None = None) -> None:
        owner = self._owner()
        if owner is None:
            return
        try:
            page = owner_log(owner, self._filter(), LOG_PAGE, cursor)
        except InvalidLogQuery as exc:
            self.log_error = str(exc)
            return
        names = {k["id"]: k["name"] for k in self.keys}
        self.log_routes = owner_routes(owner)
        rows = [log_row(row, names) for row in page.items]
        self.log_rows = (self.log_rows if cursor else []) + rows
        self.log_cursor, self.log_error = page.next_cursor or "", ""

    @rx.event
    @signed_in
    def load_logs(self, owner: str) -> None:
        self._load()

    @rx.event
    def older_logs(self) -> None:
        self._load(self.log_cursor or None)

    @rx.event
    def filter_by(self, name: str, value: str) -> None:
        """One of the log's filters changed (`key`, `status`, `route` or `since`): the first page again."""
        if name not in LOG_FILTERS:
            return
        setattr(self, f"log_{name}", value)
        self._load()

    @rx.event
    def search_request_id(self, form: dict) -> None:
        self.log_search = str(form.get("request_id") or "")
        self._load()

    @rx.event
    def open_row(self, row: dict[str, str]) -> None:
        self.opened = row

    @rx.event
    def close_row(self, is_open: bool) -> None:
        if not is_open:
            self.opened = {}


def activity_row(event: AuditEvent, key_names: dict[str, str]) -> dict[str, str]:
    """An audit event as a sentence's parts: when, who, what, to what."""
    who = "you" if event.actor == "user" else "the operator (CLI)" if event.actor == "operator" else \
        f"key {key_names.get(event.actor.removeprefix('key:'), event.actor.removeprefix('key:'))}"
    return {"id": event.id, "when": as_utc(event.created_at).strftime("%Y-%m-%d %H:%M:%S"), "who": who,
            "what": ACTIONS.get(event.action, event.action), "action": event.action,
            "detail": event.detail or event.target or "", "client": event.client or ""}


class ActivityState(DashboardState):
    activity: list[dict[str, str]] = []
    activity_cursor: str = ""

    def _load(self, cursor: str | None = None) -> None:
        owner = self._owner()
        if owner is None:
            return
        page = owner_activity(owner, LOG_PAGE, cursor)
        names = {k["id"]: k["name"] for k in self.keys}
        rows = [activity_row(event, names) for event in page.items]
        self.activity = (self.activity if cursor else []) + rows
        self.activity_cursor = page.next_cursor or ""

    @rx.event
    def older_activity(self) -> None:
        self._load(self.activity_cursor or None)

    @rx.event
    @signed_in
    def load_activity(self, owner: str) -> None:
        self._load()
