"""Service settings, read from the environment and `.env` (names as the seed README gives them)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from uuid import UUID

from pydantic import Field, PositiveFloat, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.ratelimit.policy import LimitOverride

DEFAULT_SPECIALISTS_FILE = (
    Path(__file__).resolve().parent.parent / "specialists" / "specialists.yaml"
)

# The four per-attempt bounds PROVIDER_TIMEOUTS may set for one provider.
TimeoutName = Literal["connect", "first_token", "idle", "total"]

# Used only when ENVIRONMENT=development and USER_HASH_SECRET is unset, so a fresh
# clone runs; any other environment refuses to start without a real secret.
DEV_USER_HASH_SECRET = "dev-only-user-hash-secret-change-me"


class Settings(BaseSettings):
    """Every setting of the service; see `.env.example` for one line of documentation each."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    environment: Literal["development", "production", "test"] = "development"
    log_level: str = "INFO"
    # text: Python's usual lines; json: one JSON object per line, with request ids and
    # an access line per request (README, "Operating the portal").
    log_format: Literal["text", "json"] = "text"

    # Providers: keys, base URLs (SDK conventions) and timeouts.
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_timeout_seconds: float = Field(default=120.0, gt=0)
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    anthropic_timeout_seconds: float = Field(default=120.0, gt=0)
    google_api_key: SecretStr | None = None
    google_base_url: str = "https://generativelanguage.googleapis.com"
    google_api_version: str = "v1beta"
    google_timeout_seconds: float = Field(default=120.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)

    # Specialists and pricing.
    specialists_file: Path = DEFAULT_SPECIALISTS_FILE
    # JSON object: {"model-name": {"input_per_mtok": 0.5, "output_per_mtok": 1.5}}, USD per million.
    price_overrides: dict[str, dict[str, float]] = Field(default_factory=dict)

    # Request limits (never forwarded upstream when exceeded).
    max_message_chars: int = Field(default=32_000, gt=0)
    max_history_messages: int = Field(default=50, ge=0)
    max_total_chars: int = Field(default=200_000, gt=0)

    # Database.
    database_url: str = "sqlite:///./ai_portal.db"

    # Rate limiting.
    rate_limit_requests: int = Field(default=60, gt=0)
    rate_limit_window_seconds: float = Field(default=3600, gt=0)
    trusted_proxies: list[str] = Field(default_factory=list)

    # Identity: the front end passes the signed-in user's email in this header.
    user_email_header: str = "X-User-Email"
    user_hash_secret: SecretStr | None = None

    # CORS.
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:3000", "http://localhost:8501"]
    )

    # Usage records: migrations, the background writer, its spool, the admin reports.
    # Apply pending migrations at start-up; unset means yes for SQLite, no otherwise.
    auto_migrate: bool | None = None
    database_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    usage_spool_dir: Path = Path("./var/usage-spool")
    usage_queue_size: int = Field(default=10_000, gt=0)
    usage_batch_size: int = Field(default=200, gt=0)
    usage_flush_interval_seconds: float = Field(default=0.2, ge=0)
    usage_write_timeout_seconds: float = Field(default=10.0, gt=0)
    usage_retry_max_seconds: float = Field(default=30.0, gt=0)
    # Bearer token for /usage/*; unset, those endpoints answer 404.
    admin_token: SecretStr | None = None

    @field_validator("admin_token", "metrics_token", mode="before")
    @classmethod
    def _bearer_token(cls, value: object) -> object:
        # An empty `ADMIN_TOKEN=` line means unset (no token), not an empty password.
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and len(value) < 16:
            raise ValueError("must be at least 16 characters (or unset)")
        return value

    # Rate limiting: backends, per-user limits and named overrides (docs/rate-limits.md).
    # memory | redis; unset: redis exactly when REDIS_URL is set.
    rate_limit_backend: Literal["memory", "redis"] | None = None
    redis_url: str | None = None
    # Redis unreachable: serve anyway (true) or answer 503 (false).
    rate_limit_fail_open: bool = True
    rate_limit_redis_prefix: str = "ratelimit:"
    rate_limit_redis_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    # Per-user bucket (X-User-Email); unset: the per-IP values.
    rate_limit_user_requests: int | None = Field(default=None, gt=0)
    rate_limit_user_window_seconds: float | None = Field(default=None, gt=0)
    # {"alice@example.com": {"requests": 600, "window_seconds": 3600}}; hashed at start-up.
    rate_limit_users: dict[str, LimitOverride] = Field(default_factory=dict)
    # {"<specialist id>": {"requests": 10}}; wins over `rate_limit` in the specialists file.
    rate_limit_specialists: dict[UUID, LimitOverride] = Field(default_factory=dict)

    @field_validator(
        "rate_limit_backend", "redis_url", "rate_limit_user_requests",
        "rate_limit_user_window_seconds", mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    # WebSocket chat and the OpenAI-compatible API (docs/transports.md).
    # {"alias": "<specialist id>"}: extra `model` names for /v1; specialist ids always work.
    model_aliases: dict[str, UUID] = Field(default_factory=dict)
    # Messages one WebSocket may queue behind the answer in progress; more get an error.
    ws_max_pending_messages: int = Field(default=8, ge=1, le=1000)

    @field_validator("model_aliases")
    @classmethod
    def _alias_names(cls, value: dict[str, UUID]) -> dict[str, UUID]:
        for alias in value:
            if not alias.strip() or len(alias) > 200 or alias != alias.strip():
                raise ValueError(f"alias {alias!r} must be 1-200 characters, no edge spaces")
        return value

    # Resilience: per-attempt timeouts, retries and fallbacks, circuit breakers, keep-alives
    # (docs/resilience.md). The provider's *_TIMEOUT_SECONDS above is each attempt's total cap.
    first_token_timeout_seconds: float = Field(default=60.0, gt=0)
    # Silence on a streaming connection, before the first chunk and between chunks.
    stream_idle_timeout_seconds: float = Field(default=60.0, gt=0)
    # {"google": {"first_token": 120, "idle": 90}}: per-provider connect/first_token/idle/total.
    provider_timeouts: dict[str, dict[TimeoutName, PositiveFloat]] = Field(default_factory=dict)
    retry_max_attempts: int = Field(default=3, ge=1, le=10)
    retry_base_delay_seconds: float = Field(default=0.5, ge=0)
    retry_max_delay_seconds: float = Field(default=4.0, ge=0)
    retry_jitter: float = Field(default=1.0, ge=0, le=1)
    retry_after_cap_seconds: float = Field(default=5.0, ge=0)
    retry_budget_seconds: float = Field(default=90.0, gt=0)
    breaker_failure_threshold: int = Field(default=5, ge=0)
    breaker_cool_down_seconds: float = Field(default=30.0, gt=0)
    sse_keepalive_seconds: float = Field(default=15.0, ge=0)

    # Observability (README, "Operating the portal").
    metrics_enabled: bool = True
    # Bearer token for GET /metrics; unset, /metrics is open like /health.
    metrics_token: SecretStr | None = None
    # prometheus-client's own variable, for `--workers N`; it must be in the process
    # environment (the library reads it at import), so a value only in .env stops start-up.
    prometheus_multiproc_dir: Path | None = None
    # OpenTelemetry traces: unset endpoint, no tracing at all (the SDK is not even loaded).
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "ai-portal-backend"
    # Prompt and answer text in spans (the GenAI conventions' opt-in); off by default.
    otel_instrumentation_genai_capture_message_content: bool = False

    @field_validator("otel_exporter_otlp_endpoint", mode="before")
    @classmethod
    def _blank_endpoint(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # GET /ready: while the database is down, still ready while the spool holds fewer records.
    ready_max_spool_records: int = Field(default=1000, ge=0)
    # Bound on each readiness check (database, Redis), in seconds.
    ready_timeout_seconds: float = Field(default=2.0, gt=0, le=30)

    @field_validator("prometheus_multiproc_dir", mode="before")
    @classmethod
    def _blank_dir(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("openai_base_url", "anthropic_base_url", "google_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.environment != "development" and not self.user_hash_secret:
            raise ValueError(
                "USER_HASH_SECRET must be set when ENVIRONMENT is not development"
            )
        return self

    def hash_secret(self) -> bytes:
        """The HMAC key for user identities (a fixed dev key only in development)."""
        secret = self.user_hash_secret.get_secret_value() if self.user_hash_secret else ""
        return (secret or DEV_USER_HASH_SECRET).encode()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, cached; tests override the dependency instead."""
    return Settings()
