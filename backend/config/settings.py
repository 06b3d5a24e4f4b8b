"""Service settings, read from the environment and `.env` (names as the seed README gives them)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from pydantic import Field, PositiveFloat, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.config.auth import check_auth_settings
from backend.config.budgets import BudgetsConfig, check_budget_settings
from backend.config.classification import Classification
from backend.guard.contacts import check_regions
from backend.guard.detect import DEFAULT_PHONE_REGIONS
from backend.guard.kinds import ALL_TYPES, PiiType
from backend.guard.national import DEFAULT_NATIONAL_IDS, national_ids
from backend.guard.policy import Mode as PiiMode
from backend.ratelimit.policy import LimitOverride

DEFAULT_SPECIALISTS_FILE = (
    Path(__file__).resolve().parent.parent / "specialists" / "specialists.yaml"
)

# The four per-attempt bounds PROVIDER_TIMEOUTS may set for one provider.
TimeoutName = Literal["connect", "first_token", "idle", "total"]


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
    # Governed specialists (README "Governed specialists"): database (SPECIALISTS_FILE seeds an
    # empty one) or file (the file alone, read at start-up; no admin changes).
    specialists_source: Literal["database", "file"] = "database"
    # required: a second admin approves each version; none: live at once. Unset: none in
    # development, required elsewhere.
    specialist_approval: Literal["required", "none"] | None = None
    # {"openai": "internal", "openai_compatible": "restricted"}: the highest classification
    # each provider may see; a provider not named is cleared up to `internal`.
    provider_classification: dict[str, Classification] = Field(default_factory=dict)
    # How often each worker checks the database for a changed live set.
    specialists_sync_seconds: float = Field(default=0.5, gt=0, le=60)
    # JSON object: {"model-name": {"input_per_mtok": 0.5, "output_per_mtok": 1.5}}, USD per million.
    price_overrides: dict[str, dict[str, float]] = Field(default_factory=dict)

    # Request limits (never forwarded upstream when exceeded).
    max_message_chars: int = Field(default=32_000, gt=0)
    max_history_messages: int = Field(default=50, ge=0)
    max_total_chars: int = Field(default=200_000, gt=0)

    # The front door (backend/frontdoor/): bounds on what a client may make the server hold.
    # Bytes in one request body or WebSocket message; unset: sized from MAX_TOTAL_CHARS.
    max_request_bytes: int | None = Field(default=None, ge=1024)
    # Longest a request body may take to arrive in full; a trickling client gets 408.
    body_read_timeout_seconds: float = Field(default=30.0, gt=0)
    # Bytes in the request line and headers together; over it: 431 (uvicorn's httptools).
    max_header_bytes: int = Field(default=32_768, ge=4096, le=1_048_576)
    # Longest the request line and headers may take to arrive; then the connection closes.
    header_read_timeout_seconds: float = Field(default=10.0, gt=0)

    # Database.
    database_url: str = "sqlite:///./ai_portal.db"

    # Rate limiting.
    rate_limit_requests: int = Field(default=60, gt=0)
    rate_limit_window_seconds: float = Field(default=3600, gt=0)
    trusted_proxies: list[str] = Field(default_factory=list)
    # IPv6 clients share one bucket per network of this prefix length (128: per address).
    rate_limit_ipv6_prefix: int = Field(default=64, ge=1, le=128)

    # Identity: the front end passes the signed-in user's email in this header.
    user_email_header: str = "X-User-Email"
    user_hash_secret: SecretStr | None = None
    # Development without USER_HASH_SECRET: a random key generated on first start, kept here.
    user_hash_secret_file: Path = Path("./var/user-hash-secret")

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
    # This many failed admin authentications from one client within the window, and it
    # gets 429 (right token or not) until the oldest of them is out of the window.
    admin_auth_max_failures: int = Field(default=10, ge=1, le=1000)
    admin_auth_window_seconds: float = Field(default=300.0, gt=0)

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
        "rate_limit_user_window_seconds", "max_request_bytes", "user_hash_secret",
        "budget_backend", "budget_user_usd", "budget_alert_webhook_url",
        "specialist_approval", mode="before",
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
    # A socket with no message from its client and no answer in progress for this long closes.
    ws_idle_timeout_seconds: float = Field(default=300.0, gt=0)
    # Open WebSockets one client address may hold in one worker; one more is refused (403).
    ws_max_connections_per_client: int = Field(default=16, ge=1)

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
    # The demo provider's pause between words: 0 answers at once; a few hundredths of a
    # second show the web page's streaming as a real model's answer would look.
    demo_chunk_delay_seconds: float = Field(default=0.0, ge=0, le=5)

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

    # Identity (docs/auth.md): who is asking, and how it was proved.
    # none | header | jwt; unset means none in development and is refused elsewhere.
    auth_mode: Literal["none", "header", "jwt"] | None = None
    # header mode: CIDRs of front ends whose user headers are believed, or a shared secret
    # they send in X-Frontend-Secret; the groups header is comma-separated.
    trusted_frontends: list[str] = Field(default_factory=list)
    frontend_shared_secret: SecretStr | None = None
    user_groups_header: str = "X-User-Groups"
    # jwt mode: exactly one key source (discovery, a JWKS URL, a static set, an HS256 secret).
    oidc_issuer: str | None = None
    jwt_jwks_url: str | None = None
    jwt_static_jwks: dict[str, Any] | None = None
    jwt_hs256_secret: SecretStr | None = None
    jwt_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "PS256", "ES256", "EdDSA"]
    )
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: float = Field(default=60.0, ge=0, le=600)
    jwks_cache_seconds: float = Field(default=600.0, gt=0)
    jwks_stale_seconds: float = Field(default=3600.0, ge=0)
    jwks_timeout_seconds: float = Field(default=5.0, gt=0)
    jwt_user_claim: str = "sub"
    jwt_email_claim: str = "email"
    jwt_groups_claim: str = "groups"
    jwt_cost_center_claim: str | None = None
    # Members of any of these groups are admins (the /usage/* reports, /admin/*).
    admin_groups: list[str] = Field(default_factory=list)
    # Browser sign-in (docs/auth.md, "Signing in in the browser"): with AUTH_MODE=jwt and
    # OIDC_ISSUER, the page signs users in through /auth/login (authorisation code + PKCE).
    oidc_client_id: str | None = None
    # Set for a confidential client (sent with HTTP Basic); unset: a public client.
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    # The portal's public base URL (https://portal.example.com): the redirect URI is
    # {PUBLIC_URL}/auth/callback, and cookie-authenticated requests must come from its origin.
    public_url: str | None = None
    # Encrypts the provider's tokens in the sessions table (32+ characters); required with
    # OIDC_CLIENT_ID outside development, where unset means a key derived from the user-hash key.
    session_secret: SecretStr | None = None
    # A browser session ends this long after sign-in, however often its tokens were refreshed.
    session_lifetime_seconds: float = Field(default=8 * 3600.0, gt=0)

    # Budgets (docs/budgets.md): spend caps per user, group, cost centre, specialist, portal.
    # memory | redis | off; unset: redis exactly when REDIS_URL is set, else memory.
    budget_backend: Literal["memory", "redis", "off"] | None = None
    # Every user's budget per period, unless BUDGETS or the admin API sets theirs.
    budget_user_usd: float | None = Field(default=None, ge=0)
    # USD per period: {"users": {"a@x.com": 50}, "groups", "cost_centers", "specialists", "portal"}.
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    budget_period: Literal["day", "week", "month"] = "month"
    budget_timezone: str = "UTC"
    # A model without a known price while a budget applies: refuse (402) or allow (uncounted).
    budget_unpriced: Literal["refuse", "allow"] = "refuse"
    budget_alert_percent: float = Field(default=80.0, gt=0, le=100)
    budget_alert_webhook_url: str | None = None
    # Output bound reserved and sent upstream for a specialist with no max_output_tokens.
    budget_default_max_output_tokens: int = Field(default=4096, ge=1)
    # Tokens reserved per message on top of its UTF-8 bytes (roles, separators).
    budget_message_overhead_tokens: int = Field(default=16, ge=0)
    # A reservation its worker never settled (the worker died) is dropped after this long.
    budget_reservation_ttl_seconds: float = Field(default=900.0, ge=10)
    # Budget keys' prefix in Redis; the bound on one round trip there (past it: 503).
    budget_redis_prefix: str = "budget:"
    budget_redis_timeout_seconds: float = Field(default=1.0, gt=0, le=30)

    @field_validator(
        "auth_mode", "oidc_issuer", "jwt_jwks_url", "jwt_issuer", "jwt_audience",
        "jwt_cost_center_claim", "jwt_hs256_secret", "frontend_shared_secret",
        "jwt_static_jwks", "oidc_client_id", "oidc_client_secret", "public_url",
        "session_secret", mode="before",
    )
    @classmethod
    def _blank_auth_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # The PII guard (README, "PII guard"), for specialists whose file entry has no `pii`.
    # mask: values leave as placeholders and come back in the answer; block: 422; off.
    pii_default_mode: PiiMode = "mask"
    pii_default_types: list[PiiType] = Field(default_factory=lambda: list(ALL_TYPES), min_length=1)
    # National ids checked besides the US SSN and UK NINO (python-stdnum module names).
    pii_national_ids: list[str] = Field(default_factory=lambda: list(DEFAULT_NATIONAL_IDS))
    # Regions whose national phone formats count (international `+` numbers always do).
    pii_phone_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_PHONE_REGIONS))

    @field_validator("pii_national_ids")
    @classmethod
    def _known_national_ids(cls, value: list[str]) -> list[str]:
        national_ids(value)  # a ValueError naming the unknown ones and the known ones
        return value

    @field_validator("pii_phone_regions")
    @classmethod
    def _known_regions(cls, value: list[str]) -> list[str]:
        return check_regions(value)

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
            # One key for every host and worker: a generated file per host would split users.
            raise ValueError(
                "USER_HASH_SECRET must be set when ENVIRONMENT is not development"
            )
        check_auth_settings(self)
        check_budget_settings(self)
        if self.budget_backend == "redis" and self.redis_url is None:
            raise ValueError("BUDGET_BACKEND=redis needs REDIS_URL")
        return self

    def request_byte_cap(self) -> int:
        """MAX_REQUEST_BYTES, or the default sized from the character limits.

        A JSON client may escape every character as a surrogate pair (`\\ud83d\\ude00`, 12 bytes
        for one character), so 12 bytes a character of MAX_TOTAL_CHARS, plus room for the
        history's JSON around the text, fits any conversation the limits allow.
        """
        if self.max_request_bytes is not None:
            return self.max_request_bytes
        return 12 * self.max_total_chars + 64 * 1024

    def effective_budget_backend(self) -> Literal["memory", "redis", "off"]:
        """BUDGET_BACKEND, with unset meaning redis exactly when REDIS_URL is set."""
        if self.budget_backend is not None:
            return self.budget_backend
        return "redis" if self.redis_url else "memory"

    def effective_approval(self) -> Literal["required", "none"]:
        """SPECIALIST_APPROVAL, with unset meaning `none` in development, `required` elsewhere."""
        if self.specialist_approval is not None:
            return self.specialist_approval
        return "none" if self.environment == "development" else "required"

    def effective_auth_mode(self) -> Literal["none", "header", "jwt"]:
        """AUTH_MODE, with unset meaning `none` (only allowed in development)."""
        return self.auth_mode or "none"

    def sign_in_enabled(self) -> bool:
        """Whether the page signs users in itself (AUTH_MODE=jwt with OIDC_CLIENT_ID)."""
        return self.effective_auth_mode() == "jwt" and self.oidc_client_id is not None

    def hash_secret(self) -> bytes:
        """The HMAC key for user identities (start-up fills it in: `with_hash_key`)."""
        if self.user_hash_secret is None or not self.user_hash_secret.get_secret_value():
            raise RuntimeError("no user-hash key: settings must pass through with_hash_key")
        return self.user_hash_secret.get_secret_value().encode()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, cached; tests override the dependency instead."""
    return Settings()
