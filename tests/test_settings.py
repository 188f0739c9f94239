"""Settings: defaults for a fresh machine, and production refusing every development default."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.core.settings import ProductionConfigError, Settings

STRONG_SECRET = "x" * 40

PROD_ENV = {
    "LOCKN_ENV": "prod",
    "LOCKN_DATABASE_URL": "postgresql://lockn@db.internal/lockn",
    "LOCKN_REDIS_URL": "redis://cache.internal:6379/0",
    "LOCKN_SECRET_KEY": STRONG_SECRET,
    "LOCKN_PUBLIC_URL": "https://voice.example.org",
    "AUTH0_DOMAIN": "tenant.example.auth0.com",
    "AUTH0_CLIENT_ID": "client-id-for-tests",
    "AUTH0_CLIENT_SECRET": "not-a-real-secret-just-for-tests",
    "AUTH0_AUDIENCE": "https://voice.example.org/api",
}


def test_fresh_machine_defaults(isolated_settings) -> None:
    settings = Settings(env="dev")
    assert settings.port == 3000
    assert settings.host == "127.0.0.1", "a development run must not listen on every interface"
    assert settings.base_url == "http://localhost:3000"
    assert settings.sqlalchemy_url == f"sqlite:///{isolated_settings / 'lockn.db'}"
    assert settings.identity_provider == "dev"
    assert settings.broker_url == f"redis+socket://{isolated_settings / 'redis.sock'}"


def test_port_and_public_url_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("LOCKN_PORT", "3100")
    assert Settings().base_url == "http://localhost:3100"
    monkeypatch.setenv("LOCKN_PUBLIC_URL", "https://voice.example.org/")
    assert Settings().base_url == "https://voice.example.org"


def test_plain_postgresql_url_uses_psycopg3() -> None:
    settings = Settings(database_url="postgresql://u@h/db")
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert not settings.uses_sqlite


def test_invalid_values_are_rejected_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="env"):
        Settings(env="staging")
    with pytest.raises(ValidationError, match="port"):
        Settings(port=70000)


def test_complete_production_configuration_is_accepted(monkeypatch) -> None:
    for name, value in PROD_ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.env == "prod"
    assert settings.identity_provider == "auth0"
    assert settings.session_secret() == STRONG_SECRET


@pytest.mark.parametrize(("missing", "complaint"), [
    ("LOCKN_DATABASE_URL", "LOCKN_DATABASE_URL"),
    ("LOCKN_REDIS_URL", "LOCKN_REDIS_URL"),
    ("LOCKN_SECRET_KEY", "LOCKN_SECRET_KEY"),
    ("AUTH0_DOMAIN", "development identity provider cannot run in production"),
    ("AUTH0_CLIENT_SECRET", "AUTH0_CLIENT_SECRET"),
    ("LOCKN_PUBLIC_URL", "LOCKN_PUBLIC_URL"),
])
def test_production_refuses_each_development_default(monkeypatch, missing: str, complaint: str) -> None:
    for name, value in PROD_ENV.items():
        if name != missing:
            monkeypatch.setenv(name, value)
    with pytest.raises(ProductionConfigError, match=complaint):
        Settings()


def test_production_refuses_sqlite_and_short_secrets(monkeypatch) -> None:
    for name, value in PROD_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOCKN_DATABASE_URL", "sqlite:///prod.db")
    monkeypatch.setenv("LOCKN_SECRET_KEY", "short")
    with pytest.raises(ProductionConfigError) as refused:
        Settings()
    assert "PostgreSQL" in str(refused.value) and "at least 32 characters" in str(refused.value)


def test_development_secret_is_generated_once_and_kept_private(isolated_settings) -> None:
    first = Settings().session_secret()
    assert len(first) >= 32
    assert Settings().session_secret() == first, "a restart must keep sessions valid"
    assert (isolated_settings / ".secret_key").stat().st_mode & 0o077 == 0


def test_empty_variables_mean_unset(monkeypatch) -> None:
    monkeypatch.setenv("LOCKN_SECRET_KEY", "")
    monkeypatch.setenv("LOCKN_DATABASE_URL", "")
    settings = Settings()
    assert settings.secret_key is None and settings.uses_sqlite


def test_relative_data_dir_is_relative_to_the_checkout(monkeypatch) -> None:
    from backend.core.settings import PROJECT_ROOT

    monkeypatch.setenv("LOCKN_DATA_DIR", "./data")
    assert Settings().data_dir == PROJECT_ROOT / "data"


def test_env_example_documents_every_setting() -> None:
    from backend.core.settings import PROJECT_ROOT

    documented = (PROJECT_ROOT / ".env.example").read_text()
    for name, field in Settings.model_fields.items():
        variable = field.validation_alias.choices[0] if field.validation_alias else f"LOCKN_{name.upper()}"
        assert f"\n{variable}=" in documented, f"{variable} is missing from .env.example"


REHEARSAL = {"env": "rehearsal", "database_url": "postgresql://lockn@127.0.0.1/lockn_rehearsal",
             "redis_url": "redis://127.0.0.1:6379/1"}


def test_a_rehearsal_runs_the_production_topology_with_the_dev_provider_on_loopback_only() -> None:
    settings = Settings(**REHEARSAL)
    assert settings.distributed and settings.identity_provider == "dev"
    with pytest.raises(ProductionConfigError, match="LOCKN_DATABASE_URL"):
        Settings(**{**REHEARSAL, "database_url": None})
    with pytest.raises(ProductionConfigError, match="LOCKN_REDIS_URL"):
        Settings(**{**REHEARSAL, "redis_url": None})
    with pytest.raises(ProductionConfigError, match="loopback"):
        Settings(**REHEARSAL, host="0.0.0.0")
    with pytest.raises(ProductionConfigError, match="loopback"):
        Settings(**REHEARSAL, public_url="https://voice.example.org")


def test_only_production_and_its_rehearsal_share_state_through_redis() -> None:
    assert not Settings(env="dev", redis_url="redis://127.0.0.1:6379/1").distributed
    assert Settings(**REHEARSAL).distributed


def test_the_development_provider_is_not_offered_to_the_network_by_accident(monkeypatch) -> None:
    monkeypatch.setenv("LOCKN_HOST", "0.0.0.0")
    with pytest.raises(ProductionConfigError, match="sign in as anyone") as refused:
        Settings()
    assert "LOCKN_DEV_ALLOW_NETWORK=1" in refused.value.report()
    monkeypatch.setenv("LOCKN_DEV_ALLOW_NETWORK", "1")
    assert Settings().host == "0.0.0.0"
    monkeypatch.setenv("LOCKN_DEV_ALLOW_NETWORK", "0")
    monkeypatch.setenv("AUTH0_DOMAIN", "tenant.example.test")
    assert Settings().identity_provider == "auth0", "with Auth0 the network is fine"
