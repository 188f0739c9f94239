"""SQLModel tables. The schema itself is owned by the Alembic migrations in `backend/migrations`."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel

from backend.core.clock import as_utc, utcnow  # noqa: F401 - utcnow: the defaults below; both, for services reading rows


class User(SQLModel, table=True):
    """A person who signed in. `id` is the identity provider's `sub`, so it is stable across logins."""

    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class ApiKey(SQLModel, table=True):
    """An API key. The key itself is never stored: only its digest and a short display start."""

    __tablename__ = "api_keys"
    #: One successor per key: a second rotation of the same key is refused by the database itself.
    __table_args__ = (Index("ux_api_keys_rotated_from", "rotated_from", unique=True),)

    id: str = Field(primary_key=True, max_length=40)
    owner: str = Field(index=True, max_length=255)
    name: str = Field(max_length=100)
    env: str = Field(max_length=8)
    digest: str = Field(unique=True, max_length=64)
    start: str = Field(max_length=16)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    rate_limit_requests: int = Field(default=60)
    rate_limit_window_s: int = Field(default=60)
    quota_chars: int | None = Field(default=None)
    #: Jobs of this key that may be queued or running at once (admission control).
    max_concurrent_jobs: int = Field(default=4, sa_column_kwargs={"server_default": "4"})
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    last_used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    rotated_from: str | None = Field(default=None, max_length=40)
    #: Whose limits this key spends (`services/key_lineage.py`): the first key of its rotation chain.
    lineage_id: str = Field(default="", max_length=40, sa_column_kwargs={"server_default": ""})
    #: Every lineage whose budget it draws from, the root's first, its own last: `/key_a/key_b/`.
    ancestry: str = Field(default="", max_length=400, sa_column_kwargs={"server_default": ""})


class KeyUsage(SQLModel, table=True):
    """One key's usage on one UTC day; written in batches by `UsageRecorder`, never per request."""

    __tablename__ = "key_usage"

    key_id: str = Field(foreign_key="api_keys.id", primary_key=True, max_length=40, ondelete="CASCADE")
    day: date = Field(primary_key=True)
    requests: int = Field(default=0)
    chars: int = Field(default=0)
    audio_seconds: float = Field(default=0.0)
    errors: int = Field(default=0)


class Job(SQLModel, table=True):
    """One synthesis request: queued → running (progress) → succeeded | failed."""

    __tablename__ = "jobs"

    id: str = Field(primary_key=True, max_length=40)
    owner: str = Field(index=True, max_length=255)
    key_id: str | None = Field(default=None, max_length=40)
    voice_id: str = Field(max_length=120)
    engine: str = Field(max_length=20)
    text: str = Field(sa_type=Text)
    text_chars: int
    format: str = Field(max_length=8)
    speed: float = Field(default=1.0)
    #: A spoken-style direction for engines that follow one (`EngineInfo.supports_instructions`); "" for none.
    instructions: str = Field(default="", sa_type=Text)
    status: str = Field(default="queued", index=True, max_length=12)
    progress: float = Field(default=0.0)
    chars_done: int = Field(default=0)
    attempts: int = Field(default=0)
    error: str | None = Field(default=None, max_length=500)
    audio_path: str | None = Field(default=None, max_length=500)
    audio_bytes: int | None = Field(default=None)
    duration_s: float | None = Field(default=None)
    engine_time_s: float | None = Field(default=None)
    #: Content address of (owner, text, voice, format, speed, engine version): identical requests reuse the audio.
    cache_key: str | None = Field(default=None, index=True, max_length=64)
    #: The id of the request that asked for the job: the worker's log lines about it carry it too.
    request_id: str | None = Field(default=None, max_length=128)
    #: Whether the job was asked for captions, and, once it succeeded, the captions (`media/captions.py`).
    captions_requested: bool = Field(default=False)
    captions: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    #: The batch this job speaks a line of (`services/batches.py`); None for a request of its own.
    batch_id: str | None = Field(default=None, max_length=40)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True), index=True)
    started_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ClonedVoice(SQLModel, table=True):
    """A voice cloned from an owner's reference clip; the clip lives in `<data dir>/voices/cloned/<id>.wav`."""

    __tablename__ = "cloned_voices"

    id: str = Field(primary_key=True, max_length=40)
    owner: str = Field(index=True, max_length=255)
    name: str = Field(max_length=80)
    engine: str = Field(max_length=20)
    language: str = Field(default="en", max_length=16)
    transcript: str = Field(max_length=500)
    duration_s: float
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class LoginSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds only a signed `id`; everything else stays on the server."""

    __tablename__ = "login_sessions"

    id: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(index=True, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    picture: str | None = Field(default=None, max_length=1000)
    access_token: str | None = Field(default=None, sa_type=Text)
    id_token: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class QaRun(SQLModel, table=True):
    """One run of the release smoke suite against a deployment: what `promote` and the dashboard read."""

    __tablename__ = "qa_runs"

    id: str = Field(primary_key=True, max_length=40)
    #: The deployment's base URL, without a trailing slash (see `backend.services.status.qa_runs.normalise_target`).
    target: str = Field(index=True, max_length=500)
    trigger: str = Field(max_length=16)
    started_at: datetime = Field(sa_type=DateTime(timezone=True))
    finished_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    passed: bool
    passed_count: int = Field(default=0)
    failed_count: int = Field(default=0)
    skipped_count: int = Field(default=0)
    #: The self-contained HTML report, inside the data directory (None when the suite produced none).
    report_path: str | None = Field(default=None, max_length=1000)


class RequestLog(SQLModel, table=True):
    """One `/api` or `/v1` request made with a key or a signed-in session, as its owner may look it up later.

    Written in batches off the request path (`services/request_log.py`) and pruned after
    `LOCKN_LOG_RETENTION_DAYS`. The client address is kept to its network (/24, /48), never the host.
    """

    __tablename__ = "request_logs"
    __table_args__ = (Index("ix_request_logs_owner_created", "owner", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    owner: str = Field(max_length=255)
    created_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    request_id: str = Field(index=True, max_length=128)
    key_id: str | None = Field(default=None, max_length=40)
    method: str = Field(max_length=8)
    route: str = Field(max_length=200)
    status: int
    error_code: str | None = Field(default=None, max_length=64)
    latency_ms: float
    chars: int | None = Field(default=None)
    audio_seconds: float | None = Field(default=None)
    job_id: str | None = Field(default=None, max_length=40)
    client: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=200)


class AuditEvent(SQLModel, table=True):
    """Something done to an owner's account: who (`user`, `key:<id>` or `operator`), what, when, from where.

    Written in the same transaction as the change it records (`services/audit.py`), and never changed
    or deleted by LockN: the table is append-only.
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_owner_created", "owner", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    owner: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    actor: str = Field(max_length=60)
    action: str = Field(max_length=40)
    target: str | None = Field(default=None, max_length=120)
    detail: str | None = Field(default=None, max_length=500)
    request_id: str | None = Field(default=None, max_length=128)
    client: str | None = Field(default=None, max_length=64)


class WebhookEndpoint(SQLModel, table=True):
    """Where an owner wants to hear of events (`services/webhooks.py`). The signing secret is stored encrypted
    with a key derived from LOCKN_SECRET_KEY (it must be usable to sign, so it cannot be hashed like API keys)."""

    __tablename__ = "webhook_endpoints"
    #: An owner's endpoints hold slots 0 … MAX_ENDPOINTS - 1: the cap is this index, not a count that two
    #: concurrent creates could both read below it.
    __table_args__ = (Index("ux_webhook_endpoints_owner_slot", "owner", "slot", unique=True),)

    id: str = Field(primary_key=True, max_length=40)
    owner: str = Field(index=True, max_length=255)
    slot: int | None = Field(default=None)
    url: str = Field(max_length=2000)
    #: Event types it receives, comma-separated (`services/webhooks.EVENTS`).
    events: str = Field(max_length=500)
    secret_encrypted: str = Field(max_length=500)
    enabled: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint, and how delivering it went: the delivery log, and the retry schedule
    (`next_attempt_at` while `pending`). Its id is the Standard Webhooks message id (`webhook-id`)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_owner_created", "owner", "created_at"),
                      Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
                      Index("ux_webhook_deliveries_event_key", "endpoint_id", "event_key", unique=True))

    id: str = Field(primary_key=True, max_length=40)
    endpoint_id: str = Field(index=True, max_length=40)
    owner: str = Field(max_length=255)
    event_type: str = Field(max_length=40)
    #: What makes an event happen once (e.g. `key.expiring:<key id>`): a second emit of it is dropped.
    event_key: str | None = Field(default=None, max_length=120)
    payload: dict = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=12)  # pending, succeeded, failed
    attempts: int = Field(default=0)
    response_status: int | None = Field(default=None)
    error: str | None = Field(default=None, max_length=500)
    latency_ms: float | None = Field(default=None)
    next_attempt_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    delivered_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Batch(SQLModel, table=True):
    """A file of lines to speak, run as ordinary jobs a few at a time (`services/batches.py`)."""

    __tablename__ = "batches"

    id: str = Field(primary_key=True, max_length=40)
    owner: str = Field(index=True, max_length=255)
    key_id: str | None = Field(default=None, max_length=40)
    status: str = Field(default="running", max_length=12)  # running, completed, cancelled
    total: int
    done: int = Field(default=0)
    failed: int = Field(default=0)
    captions: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class BatchLine(SQLModel, table=True):
    """One line of a batch: what to say, and the job that says it once the line's turn has come."""

    __tablename__ = "batch_lines"
    __table_args__ = (Index("ix_batch_lines_batch_status", "batch_id", "status", "line"),)

    batch_id: str = Field(primary_key=True, max_length=40)
    line: int = Field(primary_key=True)
    #: The name of its file in the archive (the caller's `id`, or the line number).
    name: str = Field(max_length=64)
    text: str = Field(sa_type=Text)
    voice: str = Field(max_length=120)
    format: str = Field(max_length=8)
    status: str = Field(default="pending", max_length=12)  # pending, queued, succeeded, failed, cancelled
    job_id: str | None = Field(default=None, index=True, max_length=40)
    error: str | None = Field(default=None, max_length=500)
    duration_s: float | None = Field(default=None)
