"""One place for every setting, read from the environment (and `.env`).

Temporal's own connection settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS_*) are not duplicated here: they are read by the
SDK's envconfig in `reportflow.core.temporal`, so a Temporal Cloud profile works as is.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reportflow.core.codec import Keyring
from reportflow.models import RetrySchedule, Timeouts

VAR_DIR = Path("var")
DEV_SECRET = "dev-only-insecure-secret"
# SECRET_KEY signs page tokens and download links: shorter keys can be brute-forced.
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_nested_delimiter="__")

    # Fails closed: unset is production (the metrics token, no migrations at boot,
    # the Chromium sandbox); `reportflow dev` sets dev, the test stack sets test.
    environment: str = Field(default="production", description="dev | test | production")
    host: str = "127.0.0.1"
    port: int = 8000

    # Signs page tokens and download links; outside dev and test it must be set
    # (SECRET_KEY), at least MIN_SECRET_BYTES long. Checked when the app is built.
    secret_key: str = DEV_SECRET
    # `key_id:base64-key,...`: the first encrypts every Temporal payload, all decrypt.
    payload_encryption_keys: SecretStr = SecretStr("")
    # Token lifetimes (days) given by `reportflow token create` unless told otherwise.
    user_token_days: int = Field(default=90, ge=1)
    admin_token_days: int = Field(default=7, ge=1)
    # Server-Sent Events: open streams per token, and how long one stream may live.
    events_max_streams_per_token: int = Field(default=4, ge=1)
    events_max_stream_seconds: float = Field(default=900.0, gt=0)

    task_queue: str = "reports"
    events_keepalive_seconds: float = 15.0
    # Each API process keeps one watcher per report being read (GET or SSE); it
    # re-describes on a history event, when a retry is due, and every
    # STATUS_REFRESH_SECONDS while an activity runs (a failed attempt writes no
    # event); it ends this long after its last reader.
    status_watch_idle_seconds: float = Field(default=10.0, gt=0)
    status_refresh_seconds: float = Field(default=10.0, gt=0)
    # A token lookup may be kept this long in each API process (never past the
    # token's expiry): pollers are spared a database query each, and a revoked
    # token is refused on every replica within this time (0: at once, and a
    # query on every request).
    token_cache_seconds: float = Field(default=2.0, ge=0)
    # /metrics reads Temporal at most once per this many seconds, whoever asks.
    metrics_cache_seconds: float = Field(default=10.0, ge=0)
    # Bearer token Prometheus sends to /metrics (an admin token works too);
    # unset, /metrics is open in dev and test and needs an admin token otherwise.
    metrics_token: str | None = None
    temporal_ui_url: str = "http://localhost:8233"

    database_url: str = f"sqlite+aiosqlite:///{VAR_DIR / 'reportflow.db'}"
    # PostgreSQL connections per process: at most pool + overflow = 8. With 2 API
    # replicas and 4 workers that is 48, beside Temporal's 2 x 20 on the same
    # server, under PostgreSQL's default max_connections=100 (97 for non-superusers).
    database_pool_size: int = 5
    database_max_overflow: int = 3
    # A directory, file:// URL or s3://bucket/prefix (endpoint, region, keys: AWS_*).
    report_store_url: str = str(VAR_DIR / "reports")
    # A completed report's PDF is removed this long after it completed (the email stays).
    report_retention_days: float = Field(default=30.0, gt=0)
    # The S3 endpoint browsers reach when it differs from AWS_ENDPOINT_URL
    # (compose: http://localhost:9000 outside, http://minio:9000 inside).
    report_store_public_endpoint: str | None = None
    # How long a PDF link (S3 presigned, or signed by the API) stays valid.
    download_link_seconds: int = 300

    # Report kinds (reportflow.kinds): `module:attribute,...` besides the built-in ones
    # and the entry points; the database their queries read (default: DATABASE_URL).
    report_kinds: str = ""
    report_kinds_database_url: str | None = None
    # A kind's file is attached to the email up to this size, else linked: a signed
    # link to PUBLIC_URL (the API as users reach it), valid EMAIL_LINK_DAYS.
    email_attach_max_bytes: int = Field(default=5 * 1024 * 1024, ge=0)
    email_link_days: float = Field(default=7.0, gt=0)
    public_url: str = "http://localhost:8000"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    # With SMTP_USERNAME set the connection must be TLS: STARTTLS (required, not
    # opportunistic) or implicit TLS (SMTP_TLS, port 465); credentials never go in clear.
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout_seconds: float = 30.0
    mail_from: str = "reportflow <reports@reportflow.localhost>"

    chromium_executable: str | None = None
    # Outside dev and test a Chromium sandbox that cannot start stops the render;
    # true runs Chromium without it (as root, or a container without user
    # namespaces), logged as a warning at each launch.
    chromium_no_sandbox: bool = False
    # Chromium (browser, zygotes, renderers) runs under SCHED_BATCH, so prints on a
    # shared host yield to the API, Temporal and workflow tasks, and at this nice
    # value or lower priority: each step above 0 costs CPU a PDF (docs/performance.md).
    chromium_nice: int = Field(default=0, ge=0, le=19)
    render_timeout_seconds: float = 60.0
    # PDFs printed at once per worker; default: one per CPU core.
    render_concurrency: int | None = Field(default=None, ge=1)

    # A user may start at most this many reports a minute (the 429 of the contract),
    # counted in the database: the limit holds across API replicas and restarts.
    rate_limit_per_minute: int = 30
    max_body_bytes: int = 16 * 1024
    # Emails sent per second across all workers (Temporal's task-queue rate limit).
    email_rate_per_second: float = Field(default=5.0, gt=0)
    # Reports of one user running at once; more wait `queued` (0 = no cap).
    max_running_reports_per_user: int = Field(default=3, ge=0)
    # Endpoints and schedules one user may hold; past them POST answers 409.
    max_webhooks_per_user: int = Field(default=10, ge=0)
    max_schedules_per_user: int = Field(default=20, ge=0)
    # Webhooks or schedules one user may create a minute (each its own budget).
    create_rate_per_minute: int = Field(default=10, ge=1)

    # Backoff per activity, e.g. RETRY__EMAIL__INITIAL_SECONDS=30.
    retry: RetrySchedule = Field(default_factory=RetrySchedule)
    # Per-attempt limits, e.g. TIMEOUTS__RENDER_HEARTBEAT=10.
    timeouts: Timeouts = Field(default_factory=Timeouts)

    # Webhook deliveries refuse private, loopback and link-local addresses unless the
    # URL's host is named here (comma-separated host names or IPs).
    webhook_allowed_hosts: str = ""
    webhook_timeout_seconds: float = 10.0

    worker_grace_seconds: float = 30.0
    # Where a worker serves Prometheus metrics (SDK + report durations); "" = off.
    worker_metrics_bind: str = "127.0.0.1:9464"
    worker_max_concurrent_activities: int = 8
    # Temporal Worker Versioning (blue-green deploys): the worker joins deployment
    # WORKER_DEPLOYMENT_NAME as build WORKER_BUILD_ID and every workflow stays pinned
    # to the build that started it (docs/operating.md, Deploys). On by default
    # outside dev and test; WORKER_VERSIONING=true/false says so explicitly.
    worker_versioning: bool | None = None
    worker_deployment_name: str = "reportflow"
    # Unset: `wf-` and a hash of the workflow sources (reportflow/workflows), so
    # the same workflow code is the same build on every replica and image, and a
    # changed workflow is a new build. Set it (the image tag, the git sha) to name
    # builds yourself.
    worker_build_id: str | None = None

    @model_validator(mode="after")
    def _refuse_weak_secret(self) -> Settings:
        # DEV_SECRET itself is let through here so that commands which never sign
        # anything (token, seed, db) run with SECRET_KEY unset; the app and the
        # worker refuse it (`secret_problem`).
        if self.secret_key != DEV_SECRET and len(self.secret_key.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"SECRET_KEY is {len(self.secret_key.encode())} bytes; it must be at least "
                f"{MIN_SECRET_BYTES} (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return self

    @model_validator(mode="after")
    def _credentials_over_tls(self) -> Settings:
        if self.smtp_username and not (self.smtp_starttls or self.smtp_tls):
            raise ValueError(
                "SMTP_USERNAME is set but the connection would be in clear: set "
                "SMTP_STARTTLS=true (port 587) or SMTP_TLS=true (port 465)"
            )
        if self.smtp_starttls and self.smtp_tls:
            raise ValueError("set one of SMTP_STARTTLS (port 587) and SMTP_TLS (port 465)")
        return self

    def secret_problem(self) -> str | None:
        """Why SECRET_KEY cannot sign anything here (None: it can)."""
        if self.is_dev or self.secret_key != DEV_SECRET:
            return None
        return (
            f"ENVIRONMENT={self.environment} needs SECRET_KEY set to a random value of at "
            f"least {MIN_SECRET_BYTES} bytes "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))'); "
            "`reportflow dev` sets ENVIRONMENT=dev and makes its own"
        )

    @field_validator("payload_encryption_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value().strip():
            Keyring.parse(value.get_secret_value())
        return value

    def keyring(self) -> Keyring:
        """The payload keys; an actionable error when PAYLOAD_ENCRYPTION_KEYS is unset."""
        return Keyring.parse(self.payload_encryption_keys.get_secret_value())

    def missing_secrets(self) -> list[str]:
        """What `reportflow api` and `reportflow worker` refuse to start without."""
        missing = []
        if not self.secret_key or self.secret_key == DEV_SECRET:
            missing.append(
                "SECRET_KEY (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if not self.payload_encryption_keys.get_secret_value().strip():
            missing.append("PAYLOAD_ENCRYPTION_KEYS (`reportflow keygen` prints one)")
        return missing

    @property
    def is_dev(self) -> bool:
        return self.environment in {"dev", "test"}

    @property
    def refuses_clear_payloads(self) -> bool:
        """Workers refuse Temporal payloads the keyring did not encrypt everywhere
        but `reportflow dev` (a start or signal in clear is someone without the key)."""
        return self.environment != "dev"

    @property
    def versioned_worker(self) -> bool:
        """Whether the worker runs with Worker Versioning (see worker_versioning)."""
        return not self.is_dev if self.worker_versioning is None else self.worker_versioning

    @property
    def chromium_sandbox_required(self) -> bool:
        """Production renders inside Chromium's sandbox or not at all (opt-out aside)."""
        return not self.is_dev and not self.chromium_no_sandbox

    @property
    def webhook_allowed(self) -> frozenset[str]:
        return frozenset(
            h.strip().lower() for h in self.webhook_allowed_hosts.split(",") if h.strip()
        )

    @property
    def report_store_path(self) -> Path:
        url = self.report_store_url
        return Path(url.removeprefix("file://"))


@lru_cache
def get_settings() -> Settings:
    return Settings()


def require_secrets(settings: Settings, command: str) -> None:
    """`reportflow api` and `reportflow worker` have no default secret: outside
    `reportflow dev` (which makes its own under var/) they stop here, saying what to set."""
    missing = settings.missing_secrets()
    if missing:
        raise SystemExit(
            f"reportflow {command}: refusing to start without {' and '.join(missing)}. "
            "Set them in the environment or .env (`reportflow keygen` prints both); "
            "`reportflow dev` makes development ones under var/."
        )
