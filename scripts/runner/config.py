"""`make run`'s settings: read and checked once, before anything starts, with its own defaults
on top, and the environment its children get."""

import os

from pydantic import ValidationError

from encryption import codec_from_settings
from runner.output import log
from runner.urls import api_url
from settings import Settings

# Served by the worker under `make run` (elsewhere only when set): Prometheus's usual port.
DEFAULT_WORKER_METRICS = "127.0.0.1:9464"


def read_settings() -> Settings | None:
    """The settings, or None once each problem with them is logged."""
    try:
        settings = Settings()
    except ValidationError as err:
        for error in err.errors():
            setting = "_".join(str(part) for part in error["loc"]).upper()
            log(f"setting {setting}: {error['msg']} (got {error.get('input')!r})")
        return None
    try:  # what would stop the API or the worker, said once here instead of in crash loops
        settings.check_production_ready(serving_api=True)
        codec_from_settings(
            settings.encryption_key_id, settings.encryption_key, settings.encryption_old_keys
        )
    except (RuntimeError, ValueError) as err:
        log(f"settings: {err}")
        return None
    return settings


def apply_run_defaults(settings: Settings) -> bool:
    """Fill in what `make run` means when unset; True if it is to start its own Temporal."""
    # TEMPORAL_ADDRESS set (environment or .env) means "use that server", else start our own.
    # Read before the assignment below, which would count as set.
    own_temporal = "temporal_address" not in settings.model_fields_set
    given = settings.model_fields_set.__contains__
    if own_temporal:
        settings.temporal_address = f"localhost:{settings.temporal_port}"
        if not given("temporal_ui_url"):
            # The console's links to an order's history go to the UI this run starts.
            settings.temporal_ui_url = f"http://localhost:{settings.temporal_ui_port}"
    if not given("public_base_url"):
        # The emails' tracking links go to the API this run starts, on whatever port.
        settings.public_base_url = api_url(settings)
    if not given("worker_metrics_address"):
        settings.worker_metrics_address = DEFAULT_WORKER_METRICS
    return own_temporal


def child_env(settings: Settings, *, own_temporal: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PUBLIC_BASE_URL"] = settings.public_base_url
    env["TEMPORAL_UI_URL"] = settings.temporal_ui_url
    if own_temporal:
        env["TEMPORAL_ADDRESS"] = settings.temporal_address
    if settings.worker_metrics_address:
        env["WORKER_METRICS_ADDRESS"] = settings.worker_metrics_address
    return env
