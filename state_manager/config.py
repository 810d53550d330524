"""Server settings, read from the environment (and `.env`) when the app is built, never at import."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from state_manager.domain.durations import parse_duration

DEFAULT_CORS_ORIGINS = (
    "http://localhost:3000,http://localhost:3001,http://127.0.0.1:3000,http://127.0.0.1:3001"
)

# Values published in .env.example or upstream's compose files: fine for trying things out,
# refused outside development mode because everybody knows them.
PUBLIC_DEV_SECRETS = frozenset({"exosphere@123", "dev-only-change-me"})
PUBLIC_DEV_ENCRYPTION_KEYS = frozenset(
    {"YTzpUlBGLSwm-3yKJRJTZnb0_aQuQQHyz64s8qAERVU=", "ZGV2LW9ubHktY2hhbmdlLW1lLWRldi1vbmx5LWtleSE="}
)


def decode_encryption_key(value: str) -> bytes:
    """Decode SECRETS_ENCRYPTION_KEY: URL-safe base64 of exactly 32 bytes."""
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except (binascii.Error, ValueError) as exc:
        raise ValueError("SECRETS_ENCRYPTION_KEY must be URL-safe base64 of 32 bytes") from exc
    if len(raw) != 32:
        raise ValueError(f"SECRETS_ENCRYPTION_KEY must decode to 32 bytes, got {len(raw)}")
    return raw


def _seconds(value: Any) -> Any:
    """A duration setting: `30d`, `12h`, `90s`, `1h30m` (domain/durations.py), or seconds."""
    return parse_duration(value) if isinstance(value, str) else value


# A duration in seconds, written in the environment as `30d`, `12h`, `90s` or a number of seconds.
Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]


class Settings(BaseSettings):
    """Every variable the server reads. Upstream's names are kept for compatibility."""

    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", case_sensitive=False
    )

    mongo_uri: str | None = None
    mongo_database_name: str = "exosphere-state-manager"
    # Credentials kept out of MONGO_URI (docker compose uses these): no URL-encoding needed.
    mongo_username: str | None = None
    mongo_password: SecretStr | None = None
    state_manager_secret: SecretStr
    secrets_encryption_key: SecretStr
    cors_origins: str = DEFAULT_CORS_ORIGINS
    mode: str = "production"
    log_level: str = "INFO"
    # json: one JSON object per line (uvicorn's lines too); console: readable lines for a terminal.
    log_format: Literal["json", "console"] = "json"
    # GET /metrics answers without the API key (e.g. scraped on a private network).
    metrics_public: bool = False
    # OpenTelemetry traces (requests and database commands) over OTLP/HTTP, e.g.
    # http://collector:4318; needs the `otel` extra. Unset: no tracing.
    otel_exporter_otlp_endpoint: str | None = None

    # The store when MONGO_URI is unset (DESIGN §5, docs/decisions/0010-embedded-store.md):
    # `python -m state_manager` runs the embedded engine (nx-27017) as a child process with its
    # data in EXOSPHERE_DATA_DIR (`--data-dir`), or a throwaway in-memory one with
    # EXOSPHERE_MEMORY=1 (`--memory`). `mock_store` is for the in-process test tiers only:
    # mongomock-motor inside the event loop, nothing kept (never a default).
    exosphere_data_dir: Path = Path(".exosphere")
    exosphere_memory: bool = False
    mock_store: bool = False

    # Our additions (DESIGN §4): leases, crash recovery, cron, long-poll.
    state_lease_seconds: float = Field(default=300.0, gt=0)
    recovery_interval_seconds: float = Field(default=5.0, gt=0)
    recovery_grace_seconds: float = Field(default=10.0, ge=0)
    cron_interval_seconds: float = Field(default=5.0, gt=0)
    long_poll_tick_seconds: float = Field(default=0.5, gt=0)
    background_loops: bool = True
    # How many times the effects of a write (children, retries, joins) may fail before the state
    # is failed visibly (NEXT_CREATED_ERROR with the reason), and how many items the recovery
    # pass reads at a time.
    effect_attempts: int = Field(default=5, ge=1, le=1000)
    recovery_batch_size: int = Field(default=200, ge=1, le=10_000)
    # Queue health (GET /queues, the dashboard): a node is "stalled" when states have been due
    # for longer than this and no runtime asked for its work in this time.
    queue_stall_seconds: float = Field(default=30.0, gt=0)
    # Limits: a request body over `max_request_bytes` is refused (413) before it is parsed (the
    # rest is drained, bounded, so every client reads the 413: api/guard.py); a
    # document over `max_document_bytes` (MongoDB's own limit by default) is never written.
    max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=1024**3)
    max_document_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    # An enqueue without `wait_ms` (the official SDKs) that finds nothing waits this long for
    # work before answering empty, like a long-poll: idle official runtimes cost ~1 request/s.
    implicit_wait_ms: int = Field(default=1000, ge=0, le=5000)
    # Leases that tune themselves for clients that never heartbeat (the official SDKs): once a node
    # has TUNED_LEASE_MIN_SAMPLES successful runs, its lease is TUNED_LEASE_MULTIPLIER x their p99
    # (of the last TUNED_LEASE_WINDOW), at least TUNED_LEASE_FLOOR_SECONDS, at most STATE_LEASE_SECONDS.
    tuned_leases: bool = True
    tuned_lease_multiplier: float = Field(default=10.0, ge=1, le=1000)
    tuned_lease_floor_seconds: float = Field(default=30.0, gt=0)
    tuned_lease_min_samples: int = Field(default=20, ge=1, le=10_000)
    tuned_lease_window: int = Field(default=200, ge=1, le=10_000)
    # How long a trigger's Idempotency-Key is remembered (seconds).
    idempotency_key_seconds: float = Field(default=24 * 3600, gt=0, le=365 * 24 * 3600)
    # Count database commands by name (benchmarks read them at GET /v0/debug/db-commands).
    count_db_commands: bool = False
    # Dashboard logins (docs/decisions/0021-dashboard-sessions-and-login-limit.md): after this
    # many wrong API keys from one client address within DASHBOARD_LOGIN_WINDOW_SECONDS (counted
    # from its first failure), that address's logins answer 429 until the window ends. Counted in
    # memory by each replica: with N replicas an address may try N times as many.
    dashboard_login_max_failures: int = Field(default=10, ge=1, le=10_000)
    dashboard_login_window_seconds: float = Field(default=300.0, gt=0, le=24 * 3600)
    # Retention (docs/self-hosting.md#retention): runs that ended (SUCCESS, FAILED, CANCELLED)
    # longer than RUN_RETENTION ago are deleted with their states and idempotency records, by a
    # pass every RETENTION_INTERVAL that one replica at a time runs (services/retention.py).
    # Unset: finished runs are kept forever. AUDIT_RETENTION: how long the audit log keeps its
    # entries. Durations like `30d`, `12h`, `10m`, `90s` (a bare number is seconds).
    run_retention: Duration | None = None
    retention_interval: Duration = 600.0
    audit_retention: Duration = 365 * 86_400.0

    @field_validator("state_manager_secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("STATE_MANAGER_SECRET must not be empty")
        return value

    @field_validator("secrets_encryption_key")
    @classmethod
    def _key_is_32_bytes(cls, value: SecretStr) -> SecretStr:
        decode_encryption_key(value.get_secret_value())
        return value

    @property
    def development(self) -> bool:
        return self.mode.lower() == "development"

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def encryption_key(self) -> bytes:
        return decode_encryption_key(self.secrets_encryption_key.get_secret_value())

    def refuse_public_secrets(self) -> None:
        """Outside development, refuse the keys that are published in examples."""
        if self.development:
            return
        if self.state_manager_secret.get_secret_value() in PUBLIC_DEV_SECRETS:
            raise ValueError("STATE_MANAGER_SECRET is a published example value; set your own")
        if self.secrets_encryption_key.get_secret_value() in PUBLIC_DEV_ENCRYPTION_KEYS:
            raise ValueError("SECRETS_ENCRYPTION_KEY is a published example value; generate your own")


@lru_cache
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg,unused-ignore]  # values come from the environment
