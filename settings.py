"""ordermill's settings, from the environment (and an optional .env file).

Durations accept seconds (`30`) or ISO 8601 (`P14D`, `PT5S`). Development defaults make
`make run` work with nothing configured; production refuses to start on them.
"""

from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_WEBHOOK_SECRET = "whsec_dev_ordermill"  # documented in the README; refused in production
DEV_DOWNLOAD_SECRET = "dlsec_dev_ordermill"


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
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    app_env: Literal["development", "production"] = "development"
    data_dir: Path = Path(".data")
    database_url: str | None = Field(
        default=None, description="Any SQLAlchemy URL; defaults to a SQLite file in DATA_DIR"
    )

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
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
    mail_from: str = "ordermill <orders@ordermill.example>"
    support_email: str = "support@ordermill.example"

    carrier_webhook_secret: str | None = None
    download_link_secret: str | None = None

    encryption_key: str | None = Field(
        default=None, description="base64 of 32 bytes; encrypts every Temporal payload"
    )
    encryption_key_id: str = "k1"
    encryption_old_keys: str | None = Field(
        default=None, description="id:base64,... keys that still decrypt older payloads"
    )

    delivery_timeout: Duration = timedelta(days=14)
    return_window: Duration = timedelta(days=30)
    fulfillment_delay: Duration = timedelta(seconds=5)

    activity_threads: int = 32

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
    def webhook_secret(self) -> str:
        return self.carrier_webhook_secret or self._dev_only(
            "CARRIER_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET
        )

    @property
    def download_secret(self) -> str:
        return self.download_link_secret or self._dev_only(
            "DOWNLOAD_LINK_SECRET", DEV_DOWNLOAD_SECRET
        )

    def _dev_only(self, name: str, value: str) -> str:
        if self.is_production:
            raise RuntimeError(f"{name} must be set when APP_ENV=production")
        return value

    def check_production_ready(self) -> None:
        """Refuse to start in production on any development default, naming it."""
        if not self.is_production:
            return
        missing = [
            name
            for name, value in (
                ("CARRIER_WEBHOOK_SECRET", self.carrier_webhook_secret),
                ("DOWNLOAD_LINK_SECRET", self.download_link_secret),
            )
            if not value or value in (DEV_WEBHOOK_SECRET, DEV_DOWNLOAD_SECRET)
        ]
        if missing:
            raise RuntimeError(
                "refusing to start with APP_ENV=production: set " + ", ".join(missing)
            )
