"""LockN's configuration: one typed object, read from the environment and `.env`.

Every other module asks `get_settings()` instead of reading `os.environ`, so the
whole configuration surface is this file (and `.env.example` documents it).

Production (`LOCKN_ENV=prod`) refuses to start with any development default:
an embedded SQLite database, the embedded broker, the development identity
provider, or a secret that was not set explicitly. The check lives in a
validator, so it runs wherever settings are built: the web app, a worker, the CLI.

`LOCKN_ENV=rehearsal` is the production topology on one machine (`make prod-local`):
PostgreSQL, Redis, several replicas, exactly as in production, but it may use the
development identity provider, because it refuses any address but loopback.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository root: default home of `data/` and of `.env`.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

Environment = Literal["dev", "test", "rehearsal", "prod"]
MIN_SECRET_LENGTH = 32
#: Hosts a rehearsal may bind to and be reached at: it never leaves this machine.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ProductionConfigError(Exception):
    """Raised when `LOCKN_ENV=prod` is combined with a development default.

    Not a ValueError on purpose: pydantic would fold it into a ValidationError;
    the operator should read only our sentences (`problems`, one per thing to fix).
    """

    def __init__(self, env: str, problems: list[str]) -> None:
        super().__init__(f"LOCKN_ENV={env} refuses development defaults: " + "; ".join(problems))
        self.env, self.problems = env, problems

    def report(self) -> str:
        """The refusal as an operator reads it: one line per thing to fix."""
        return f"LockN will not start with LOCKN_ENV={self.env}. Fix these first:\n" + \
            "\n".join(f"  - {problem}" for problem in self.problems)


class Settings(BaseSettings):
    """All of LockN's settings. Field names map to `LOCKN_<NAME>` variables."""

    model_config = SettingsConfigDict(
        env_prefix="LOCKN_",
        env_file=PROJECT_ROOT / ".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # `LOCKN_SECRET_KEY=` (as copied from .env.example) means "unset", never "the empty secret".
        env_ignore_empty=True,
    )

    env: Environment = "dev"
    port: int = Field(3000, ge=1, le=65535, description="The one port Reflex serves pages, API and websocket on.")
    host: str = Field("127.0.0.1", description="Address the server binds to; 0.0.0.0 exposes it to the network.")
    dev_allow_network: bool = Field(False, description="Let the development identity provider (sign in as anyone) "
                                    "be reached from the network: LOCKN_HOST other than loopback. Never in prod.")
    public_url: str | None = Field(None, description="URL users reach LockN at; default http://localhost:<port>.")
    data_dir: Path = Field(PROJECT_ROOT / "data", description="Runtime files: SQLite database, audio, dev secrets.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite under data_dir.")
    models_dir: Path | None = Field(None, description="Where `models pull` puts engine weights and workers find them; "
                                    "default data_dir/models (a GPU host may keep them on a local disk).")
    redis_url: str | None = Field(None, description="Redis for broker, rate limits, state; default embedded.")
    secret_key: SecretStr | None = Field(None, description="Signs session cookies; at least 32 characters.")
    key_pepper: SecretStr | None = Field(None, description="Server secret mixed into stored API key digests (HMAC).")
    engines: str = Field("piper", description="Comma-separated engines a worker loads, by the names of the engine "
                                              "registry (backend/queue/engines.py).")
    fish_checkpoint_dir: Path | None = Field(None, description="Fish Speech checkpoints (text2semantic + codec).")
    fish_device: str = Field("auto", description="Fish Speech device: auto (cuda when present), cuda, cpu.")
    fish_max_new_tokens: int = Field(1024, ge=1, description="Upper bound of semantic tokens per sentence.")
    worker_nice: int = Field(0, ge=0, le=19, description="A worker's CPU niceness (make run's batch worker: 10).")
    batch_slots: int = Field(1, ge=1, le=64, description="Jobs of one owner's batches (all of them together) "
                                                         "queued or running at once, oldest batch first; the other "
                                                         "worker slots stay free for interactive requests.")
    max_cloned_voices: int = Field(50, ge=1, le=10_000, description="Cloned voices one owner may keep; one more "
                                   "answers 409 until they delete one.")
    staged_clip_max_age_s: int = Field(3600, ge=60, description="Seconds a clip dropped in the Studio may wait to "
                                       "become a voice; older ones (and unfinished uploads) are swept by the workers.")
    webhook_retry_base_s: float = Field(5.0, gt=0, description="First webhook retry after this many seconds; "
                                                                "each next one 4x later (at most 6 h), for 24 h.")
    webhook_timeout_s: float = Field(5.0, gt=0, le=30, description="The whole of one webhook delivery attempt: DNS, "
                                     "connect, send, and the answer's status and headers; then it is a failed try.")
    webhook_dns_timeout_s: float = Field(2.0, gt=0, le=10, description="How long a webhook host's DNS lookup may "
                                         "take (when an endpoint is added, and within each delivery attempt).")
    webhook_concurrency: int = Field(8, ge=1, le=64, description="Deliveries the webhook worker (its own queue, "
                                     "`webhooks`) sends at once; a slow endpoint holds one of these, never a "
                                     "synthesis slot.")
    webhook_sends_per_minute: int = Field(10, ge=1, le=10_000, description="Test events and resends (together) "
                                          "one owner may ask for per minute; more answer 429 with Retry-After.")
    qwen_checkpoint_dir: Path | None = Field(
        None, description="Qwen3-TTS 12 Hz checkpoint: CustomVoice (preset speakers, instructions) or Base (cloning).")
    qwen_clone_checkpoint_dir: Path | None = Field(
        None, description="A second Qwen3-TTS checkpoint, Base, for cloned voices beside a CustomVoice one.")
    qwen_device: str = Field("auto", description="Qwen3-TTS device: auto (cuda when present), cuda, cpu.")
    qwen_max_new_tokens: int = Field(2048, ge=1, description="Upper bound of codec frames (12.5/s) per sentence.")
    gpu_max_streams: int = Field(8, ge=1, le=256, description="Jobs a GPU worker runs at once, decoded together "
                                 "by one copy of each model (continuous batching).")
    gpu_step: Literal["auto", "graphs", "compiled", "eager"] = Field(
        "auto", description="How Fish Speech and Qwen3-TTS run a frame: graphs (CUDA graphs of the eager kernels, "
        "recorded at warm-up in seconds), compiled (torch.compile + CUDA graphs: minutes per bucket of streams at "
        "the first start, kernels cached in data_dir/torch-compile) or eager; auto: graphs on CUDA, else eager.")
    job_time_limit_s: int = Field(600, ge=10, description="A synthesis job is stopped after this long.")
    max_queue_depth: int = Field(500, ge=1, description="Jobs that may wait on one queue; beyond it new jobs "
                                 "answer 503 overloaded with Retry-After.")
    studio_rate_limit: str = Field("30/minute", description="Generations one signed-in Studio user may start, "
                                   "as requests per window (60/minute, 10/second, 1000/hour).")
    studio_max_concurrent_jobs: int = Field(2, ge=1, le=100, description="Jobs one signed-in Studio user may "
                                            "have queued or running at once.")
    metrics_token: SecretStr | None = Field(None, description="Bearer token Prometheus sends to GET /metrics. "
                                            "Without one, /metrics answers only in dev and test (never in prod).")
    worker_metrics_port: int | None = Field(None, ge=1, le=65535, description="A worker serves its machine's "
                                            "metrics on this port (for worker machines without a web process).")
    request_log: bool = Field(True, description="Keep the request log (every keyed or signed-in /api and /v1 "
                              "request, for its owner to look up).")
    log_retention_days: int = Field(30, ge=1, le=3650, description="Days the request log keeps a request; older "
                                    "rows are pruned by the workers' periodic sweep.")
    trust_proxy_request_id: bool = Field(False, description="Take X-Request-Id from the proxy in front (only behind "
                                         "one that sets or strips it); otherwise LockN makes every request's id.")
    studio_quota_chars: int | None = Field(None, ge=1, le=10**12, description="Characters one signed-in Studio "
                                           "user may generate per calendar month (UTC); unset: no quota.")
    worker_stop_grace_s: float = Field(30.0, ge=0, description="On Ctrl-C, how long `make run`'s worker may "
                                       "finish its running job; a job still running then is queued again.")
    job_visibility_timeout_s: int | None = Field(
        None, ge=1, description="How long before an unacknowledged job of a dead worker is redelivered.")
    openai_voices: str = Field("", description="OpenAI voice names → LockN voice ids, e.g. alloy=en_US-joe-medium.")
    session_ttl: int = Field(12 * 3600, ge=60, description="Seconds a sign-in lasts (LOCKN_SESSION_TTL).")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    qa_nightly_at: str | None = Field(
        None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="HH:MM (UTC) at which the QA worker runs the smoke suite against base_url; unset = off.")
    promote_max_age_h: float = Field(
        24.0, gt=0, description="`promote` refuses when the last passing QA run is older than this many hours.")
    promote_command: str | None = Field(
        None, description="Shell command `promote` runs after tagging, with FROM, TO and RELEASE_TAG set.")

    hf_endpoint: str | None = Field(None, validation_alias=AliasChoices("HF_ENDPOINT", "LOCKN_HF_ENDPOINT"),
                                    description="Model hub `models pull` downloads from (a mirror); default the "
                                    "Hugging Face Hub.")
    hf_token: SecretStr | None = Field(None, validation_alias=AliasChoices("HF_TOKEN", "LOCKN_HF_TOKEN"),
                                       description="Hub token for gated models (Fish Speech's); a read token.")
    auth0_domain: str | None = Field(None, validation_alias=AliasChoices("AUTH0_DOMAIN", "LOCKN_AUTH0_DOMAIN"))
    auth0_client_id: str | None = Field(None, validation_alias=AliasChoices("AUTH0_CLIENT_ID", "LOCKN_AUTH0_CLIENT_ID"))
    auth0_client_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AUTH0_CLIENT_SECRET", "LOCKN_AUTH0_CLIENT_SECRET")
    )
    auth0_audience: str | None = Field(None, validation_alias=AliasChoices("AUTH0_AUDIENCE", "LOCKN_AUTH0_AUDIENCE"))

    @field_validator("data_dir", "models_dir")
    @classmethod
    def _relative_to_project(cls, value: Path | None) -> Path | None:
        """A relative data directory is relative to the checkout, wherever the process was started from."""
        return value if value is None or value.is_absolute() else PROJECT_ROOT / value

    @property
    def base_url(self) -> str:
        """The URL the app is reached at, without a trailing slash."""
        return (self.public_url or f"http://localhost:{self.port}").rstrip("/")

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to an SQLite file under `data_dir`."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'lockn.db'}"
        # A plain postgresql:// URL means psycopg 3, the driver LockN ships.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @property
    def qa_nightly_time(self) -> tuple[int, int] | None:
        """(hour, minute) UTC of the nightly QA run, or None when it is off."""
        if not self.qa_nightly_at:
            return None
        hour, minute = self.qa_nightly_at.split(":")
        return int(hour), int(minute)

    @property
    def engine_names(self) -> list[str]:
        return [name.strip() for name in self.engines.split(",") if name.strip()]

    @property
    def redelivery_timeout_s(self) -> int:
        """Longer than the longest job (the time limit), so a slow job is never run twice by mistake."""
        return self.job_visibility_timeout_s or self.job_time_limit_s + 60

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def audio_dir(self) -> Path:
        return self.data_dir / "audio"

    @property
    def uses_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def identity_provider(self) -> Literal["auth0", "dev"]:
        """Auth0 once it is configured; otherwise the local development provider."""
        return "auth0" if self.auth0_domain else "dev"

    @property
    def embedded_broker_socket(self) -> Path:
        """Unix socket of the embedded Redis that `make run` starts when no Redis URL is set."""
        return self.data_dir / "redis.sock"

    @property
    def broker_url(self) -> str:
        """Celery broker and result backend: configured Redis, else the embedded one."""
        return self.redis_url or f"redis+socket://{self.embedded_broker_socket}"

    @property
    def distributed(self) -> bool:
        """Several web replicas share Redis and PostgreSQL (Reflex then keeps its state in Redis)."""
        return self.env in ("prod", "rehearsal")

    @model_validator(mode="after")
    def _refuse_development_defaults_in_prod(self) -> Settings:
        if self.env == "prod":
            problems = production_problems(self)
        elif self.env == "rehearsal":
            problems = rehearsal_problems(self)
        else:
            problems = development_problems(self)
        if problems:
            raise ProductionConfigError(self.env, problems)
        return self

    def session_secret(self) -> str:
        """The secret that signs cookies.

        Outside production an unset secret is generated once and kept in
        `data_dir/.secret_key`, so sessions survive a restart without anyone
        committing a secret. Production never reaches the fallback (see the validator).
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / ".secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()


def topology_problems(settings: Settings) -> list[str]:
    """What production and its rehearsal both need: shared PostgreSQL and Redis."""
    problems: list[str] = []
    if settings.uses_sqlite:
        problems.append("set LOCKN_DATABASE_URL to a PostgreSQL database (SQLite is for development)")
    if not settings.redis_url:
        problems.append("set LOCKN_REDIS_URL (the embedded broker is for development)")
    return problems


def development_problems(settings: Settings) -> list[str]:
    """A development run signs anyone in as anyone: that is safe only where nobody else can reach it."""
    if settings.identity_provider == "dev" and settings.host not in LOOPBACK_HOSTS and not settings.dev_allow_network:
        return [f"LOCKN_HOST={settings.host} would let anyone on the network sign in as anyone through the "
                "development identity provider: bind to 127.0.0.1, configure Auth0 (AUTH0_*), or set "
                "LOCKN_DEV_ALLOW_NETWORK=1 on a network you trust"]
    return []


def rehearsal_problems(settings: Settings) -> list[str]:
    """A rehearsal runs the production topology, reachable from this machine only."""
    problems = topology_problems(settings)
    if settings.host not in LOOPBACK_HOSTS:
        problems.append(f"bind LOCKN_HOST to loopback ({', '.join(LOOPBACK_HOSTS)}): a rehearsal may use the "
                        "development identity provider, so it must not be reachable from the network")
    public_host = urlsplit(settings.base_url).hostname
    if public_host not in LOOPBACK_HOSTS:
        problems.append("LOCKN_PUBLIC_URL of a rehearsal must be a loopback address such as http://localhost:3000")
    return problems


def production_problems(settings: Settings) -> list[str]:
    """Every development default still present, as a sentence an operator can act on."""
    problems = topology_problems(settings)
    if settings.identity_provider == "dev":
        problems.append("set AUTH0_DOMAIN, AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET and AUTH0_AUDIENCE "
                        "(the development identity provider cannot run in production)")
    elif not (settings.auth0_client_id and settings.auth0_client_secret and settings.auth0_audience):
        problems.append("set AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET and AUTH0_AUDIENCE")
    secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
    if len(secret) < MIN_SECRET_LENGTH:
        problems.append(f"set LOCKN_SECRET_KEY to a random value of at least {MIN_SECRET_LENGTH} characters")
    if not settings.public_url or not settings.public_url.startswith("https://"):
        problems.append("set LOCKN_PUBLIC_URL to the https:// address users reach LockN at")
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built once. Tests call `get_settings.cache_clear()`."""
    return Settings()
