"""State of one key's own page (`/dashboard/keys/<id>`): the key, its usage chart, its requests, its rotation line.

It is the dashboard's state narrowed to one key: the usage chart shows that key's series and the request log is
filtered to it, through the same services (`KeyService.overview`, `request_log.owner_log`) and the same checks.
"""

from __future__ import annotations

import reflex as rx

from state.auth import private_page
from state.history import RequestLogState


class KeyPageState(RequestLogState):
    #: The key as the table shows it (`dashboard.key_row`); empty when the address names no key of this user.
    key: dict[str, str] = {}
    key_missing: bool = False

    @rx.event
    @private_page
    def load_key(self, owner: str):  # type: ignore[no-untyped-def]
        self._refresh_keys(owner)
        key_id = str(self.router.url.path).rstrip("/").rsplit("/", 1)[-1]
        self.key = next((k for k in self.keys if k["id"] == key_id), {})
        self.key_missing = not self.key
        if self.key:  # every query below is the owner's own: a foreign id is simply not among their keys
            self.chart_key, self.log_key = key_id, key_id
            self._set_usage()
            self._load()
        return None
