"""ordermill's settings, from the environment (and an optional .env file).

Durations accept seconds (`30`) or ISO 8601 (`P14D`, `PT5S`). Development defaults make
`make run` work with nothing configured; production refuses to start on them.

API_KEYS is `key:role` or `key:role:name`, comma-separated; role `client` or `operator`. The
name is who the key stands for (a client's orders belong to its name), so several keys may share
one name, which is how a principal rotates its key. Without a name, the key's fingerprint is used.
"""

import hashlib
import re
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_WEBHOOK_SECRET = "whsec_dev_ordermill"  # documented in the README; refused in production
DEV_DOWNLOAD_SECRET = "dlsec_dev_ordermill"
DEV_TRACKING_SECRET = "trsec_dev_ordermill"
# The development API keys, printed by `make run`; any of them refuses a production start.
DEV_API_KEYS = (
    "omk_dev_client:client:dev-client,"
    "omk_dev_client2:client:dev-client-2,"
    "omk_dev_operator:operator:dev-operator"
)
ROLES = ("client", "operator")
MIN_PRODUCTION_KEY_LENGTH = 24
_KEY = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces; ',' and ':' separate
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


class ApiKeyEntry(NamedTuple):
    key: str
    role: str
    name: str


def key_fingerprint(key: str) -> str:
    """A name for a key that was given none: short, stable, and says nothing about the key."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def parse_api_keys(value: str) -> list[ApiKeyEntry]:
    """`key:role[:name],...`; errors name the entry by position, never echo a key."""
    entries: list[ApiKeyEntry] = []
    roles_by_name: dict[str, str] = {}
    for position, raw in enumerate((part.strip() for part in value.split(",")), start=1):
        if not raw:
            continue
        key, _, rest = raw.partition(":")
        role, _, name = rest.partition(":")
        where = f"API_KEYS entry {position}"
        if not _KEY.fullmatch(key):
            raise ValueError(f"{where}: the key must be printable ASCII without spaces")
        if role not in ROLES:
            raise ValueError(f"{where}: the role must be one of {', '.join(ROLES)}")
        name = name or key_fingerprint(key)
        if not _NAME.fullmatch(name):
            raise ValueError(f"{where}: the name must be 1 to 64 of A-Z a-z 0-9 . _ @ -")
        if any(entry.key == key for entry in entries):
            raise ValueError(f"{where}: the same key is listed twice")
        if roles_by_name.setdefault(name, role) != role:
            raise ValueError(f"{where}: name {name!r} is given both roles")
        entries.append(ApiKeyEntry(key, role, name))
    return entries


DEV_API_KEY_ENTRIES = parse_api_keys(DEV_API_KEYS)


def _seconds_or_iso(value: object) -> object:
    """`"30"` and `"1.5"` are seconds; anything else (`"P14D"`) goes to pydantic's parser."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value.strip()
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds_or_iso)]


class Settings(BaseSettings):
    # An empty variable counts as unset, so `FOO=` (or compose's `${FOO:-}`) means "the default".
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    app_env: Literal["development", "production"] = "development"
    data_dir: Path = Path(".data")
    database_url: str | None = Field(
        default=None, description="Any SQLAlchemy URL; defaults to a SQLite file in DATA_DIR"
    )

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_connect_timeout: Duration = Field(
        default=timedelta(seconds=60),
        ge=timedelta(0),
        description="How long the worker waits at start-up for a Temporal server it cannot "
        "reach yet (refused, not resolvable), trying again every few seconds; 0: not at all",
    )
    temporal_port: int = 7233
    temporal_ui_port: int = 8233

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str = "http://localhost:8000"

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    email_send_lease: Duration = Field(
        default=timedelta(seconds=30),
        gt=timedelta(0),
        description="How long a worker may take to send one email before another may send it "
        "again (a worker that died mid-send): longer than any send the SMTP timeouts allow",
    )
    mail_from: str = "ordermill <orders@ordermill.example>"
    support_email: str = "support@ordermill.example"

    api_keys: str | None = Field(
        default=None,
        description="key:role[:name],... (role client or operator); development keys when unset",
        repr=False,
    )

    # Both names are read and every secret listed in either is accepted (rotation).
    carrier_webhook_secret: str | None = Field(default=None, repr=False)
    carrier_webhook_secrets: str | None = Field(default=None, repr=False)
    download_link_secret: str | None = Field(default=None, repr=False)
    download_link_ttl: Duration = Field(
        default=timedelta(days=30),
        gt=timedelta(0),
        description="How long a download link works, from the digital delivery it was sent for",
    )

    tracking_link_secret: str | None = Field(default=None, repr=False)
    tracking_link_ttl: Duration = Field(
        default=timedelta(days=90),
        gt=timedelta(0),
        description="How long the order-tracking link in every email works, from the order's "
        "placement: longer than delivery and the return window together",
    )
    temporal_ui_url: str = Field(
        default="http://localhost:8233",
        description="The Temporal UI the operator console links each order's history to",
    )

    encryption_key: str | None = Field(
        default=None, description="base64 of 32 bytes; encrypts every Temporal payload", repr=False
    )
    encryption_key_id: str = "k1"
    encryption_old_keys: str | None = Field(
        default=None, description="id:base64,... keys that still decrypt older payloads", repr=False
    )
    codec_cors_origins: str | None = Field(
        default=None,
        description="Origins (comma-separated) whose pages may call /codec: the Temporal UI's; "
        "http://localhost:$TEMPORAL_UI_PORT and http://127.0.0.1:$TEMPORAL_UI_PORT when unset",
    )

    delivery_timeout: Duration = timedelta(days=14)
    return_window: Duration = timedelta(days=30)
    return_arrival_timeout: Duration = timedelta(days=30)
    fulfillment_delay: Duration = timedelta(seconds=5)
    max_inquiries: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Questions one order takes; more are a 409 (each grows its history)",
    )

    risk_review_threshold: int = Field(
        default=50000,
        ge=0,
        description="An order of at least this total (minor units) waits for an operator's "
        "risk review (a `risk_review` hold)",
    )
    review_timeout: Duration = Field(
        default=timedelta(days=3),
        gt=timedelta(0),
        description="A risk review nobody decides by then cancels the order (review_timeout)",
    )
    backorder_timeout: Duration = Field(
        default=timedelta(days=30),
        gt=timedelta(0),
        description="A backordered order whose stock has not arrived by then is cancelled",
    )
    auth_validity: Duration = Field(
        default=timedelta(days=7),
        gt=timedelta(0),
        description="How long the simulated card processor's authorizations live (the worker)",
    )
    auth_renew_margin: Duration = Field(
        default=timedelta(days=1),
        gt=timedelta(0),
        description="How long before its card authorization expires a waiting order renews it",
    )

    update_wait: Duration = Field(
        default=timedelta(seconds=20),
        gt=timedelta(0),
        description="How long a request waits for an order's Update (cancel, return, refund, "
        "...) to finish; past it the answer is 202 with Location, and the Update carries on",
    )
    idempotency_key_ttl: Duration = Field(
        default=timedelta(days=1),
        gt=timedelta(0),
        description="How long an Idempotency-Key is honoured; the API purges older ones",
    )

    reconcile_cron: str = Field(
        default="0 2 * * *",
        pattern=r"^\S+( \S+){4}$",
        description="When the `ordermill-reconcile` Schedule runs the reconciliation: a cron "
        "expression of five fields, in UTC",
    )

    activity_threads: int = 32
    metrics_auth: Literal["open", "operator"] | None = Field(
        default=None,
        description="Who may read the API's /metrics: `open` (anyone who reaches the API) or "
        "`operator`; unset, open in development and operator in production",
    )
    worker_metrics_address: str | None = Field(
        default=None,
        pattern=r"^[^:\s]+:\d{1,5}$",
        description="host:port where the worker serves Prometheus metrics (the SDK's and "
        "ordermill's, at /metrics); unset, none are served",
    )
    # OpenTelemetry's own variable names, so an environment set up for OTel elsewhere works here.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="Base URL of an OTLP/HTTP collector (e.g. http://otel-collector:4318): the "
        "API and the worker send traces to its /v1/traces; unset, nothing is traced",
    )
    otel_service_name: str | None = Field(
        default=None,
        description="The service name on this process's spans; unset, ordermill-api for the "
        "API and ordermill-worker for the worker",
    )
    workflow_cache_size: int = Field(
        default=300,
        description="Orders the worker keeps in memory between their steps (about 0.4 MB "
        "each); the others are replayed from their history when they next move",
    )

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'ordermill.db'}"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def api_key_entries(self) -> list[ApiKeyEntry]:
        if self.api_keys is not None and self.api_keys.strip():
            return parse_api_keys(self.api_keys)
        self._dev_only("API_KEYS", DEV_API_KEYS)
        return list(DEV_API_KEY_ENTRIES)

    @property
    def webhook_secrets(self) -> list[str]:
        """Every active carrier secret, from CARRIER_WEBHOOK_SECRETS and CARRIER_WEBHOOK_SECRET."""
        found: list[str] = []
        for value in (self.carrier_webhook_secrets, self.carrier_webhook_secret):
            for secret in (part.strip() for part in (value or "").split(",")):
                if secret and secret not in found:
                    found.append(secret)
        return found or [self._dev_only("CARRIER_WEBHOOK_SECRETS", DEV_WEBHOOK_SECRET)]

    @property
    def webhook_secret(self) -> str:
        """The active secrets as one comma-separated value (`signatures.secrets_from_setting`)."""
        return ",".join(self.webhook_secrets)

    @property
    def codec_origins(self) -> list[str]:
        if self.codec_cors_origins is not None:
            return [o.strip().rstrip("/") for o in self.codec_cors_origins.split(",") if o.strip()]
        port = self.temporal_ui_port
        return [f"http://localhost:{port}", f"http://127.0.0.1:{port}"]

    @property
    def download_secret(self) -> str:
        return self.download_link_secret or self._dev_only(
            "DOWNLOAD_LINK_SECRET", DEV_DOWNLOAD_SECRET
        )

    @property
    def tracking_secret(self) -> str:
        return self.tracking_link_secret or self._dev_only(
            "TRACKING_LINK_SECRET", DEV_TRACKING_SECRET
        )

    def _dev_only(self, name: str, value: str) -> str:
        if self.is_production:
            raise RuntimeError(f"{name} must be set when APP_ENV=production")
        return value

    @property
    def effective_metrics_auth(self) -> Literal["open", "operator"]:
        return self.metrics_auth or ("operator" if self.is_production else "open")

    def production_problems(self, *, serving_api: bool = True) -> list[str]:
        """What keeps this configuration from running in production, one phrase per setting.

        A worker serves no HTTP, so it may run without API_KEYS (but never with development keys).
        """
        problems = []
        if self.metrics_auth == "open":
            problems.append("METRICS_AUTH is open (production requires operator)")
        entries = parse_api_keys(self.api_keys) if self.api_keys else []
        dev_keys = {entry.key for entry in DEV_API_KEY_ENTRIES}
        if not entries:
            if serving_api:
                problems.append("API_KEYS is not set")
        elif used := [e.name for e in entries if e.key in dev_keys]:
            problems.append(f"API_KEYS holds development key(s) of {', '.join(used)}")
        elif short := [e.name for e in entries if len(e.key) < MIN_PRODUCTION_KEY_LENGTH]:
            problems.append(
                f"API_KEYS: the key(s) of {', '.join(short)} are shorter than "
                f"{MIN_PRODUCTION_KEY_LENGTH} characters"
            )
        secrets = [
            s.strip()
            for value in (self.carrier_webhook_secrets, self.carrier_webhook_secret)
            for s in (value or "").split(",")
            if s.strip()
        ]
        if not secrets:
            problems.append("CARRIER_WEBHOOK_SECRETS (or CARRIER_WEBHOOK_SECRET) is not set")
        elif DEV_WEBHOOK_SECRET in secrets:
            problems.append("CARRIER_WEBHOOK_SECRETS holds the development webhook secret")
        if not self.download_link_secret:
            problems.append("DOWNLOAD_LINK_SECRET is not set")
        elif self.download_link_secret == DEV_DOWNLOAD_SECRET:
            problems.append("DOWNLOAD_LINK_SECRET is the development secret")
        if not self.tracking_link_secret:
            problems.append("TRACKING_LINK_SECRET is not set")
        elif self.tracking_link_secret == DEV_TRACKING_SECRET:
            problems.append("TRACKING_LINK_SECRET is the development secret")
        if not self.encryption_key:
            problems.append("ENCRYPTION_KEY is not set (order payloads would be stored in clear)")
        return problems

    def check_production_ready(self, *, serving_api: bool = False) -> None:
        """Refuse to start in production on any development default, naming each one.

        A malformed API_KEYS stops a start in any mode. It is checked here rather than by a
        validator, whose error would print the value, keys and all.
        """
        if self.api_keys:
            parse_api_keys(self.api_keys)
        if self.is_production and (problems := self.production_problems(serving_api=serving_api)):
            raise RuntimeError("refusing to start with APP_ENV=production: " + "; ".join(problems))
