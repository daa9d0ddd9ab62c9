"""Settings: API keys are parsed strictly, development defaults stay in development, and a
production start names every setting that keeps it from being safe."""

import base64
import os
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from settings import (
    DEV_API_KEYS,
    DEV_DOWNLOAD_SECRET,
    DEV_TRACKING_SECRET,
    DEV_WEBHOOK_SECRET,
    ApiKeyEntry,
    Settings,
    key_fingerprint,
    parse_api_keys,
)

OURS = (
    "APP_ENV",
    "API_KEYS",
    "CARRIER_",
    "DOWNLOAD_",
    "ENCRYPTION_",
    "CODEC_",
    "TEMPORAL_UI",
    "UPDATE_WAIT",
    "IDEMPOTENCY_",
)
GOOD_KEY = "omk_live_" + "x" * 32
GOOD = {
    "app_env": "production",
    "api_keys": f"{GOOD_KEY}:client:shop,omk_live_{'y' * 32}:operator:ops",
    "carrier_webhook_secrets": "whsec_live_1",
    "download_link_secret": "dlsec_live_1",
    "tracking_link_secret": "trsec_live_1",
    "encryption_key": base64.b64encode(os.urandom(32)).decode(),
}


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's environment and .env play no part here."""
    for name in list(os.environ):
        if name.startswith(OURS):
            monkeypatch.delenv(name)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_development_uses_the_documented_keys() -> None:
    assert settings().api_key_entries == [
        ApiKeyEntry("omk_dev_client", "client", "dev-client"),
        ApiKeyEntry("omk_dev_client2", "client", "dev-client-2"),
        ApiKeyEntry("omk_dev_operator", "operator", "dev-operator"),
    ]
    assert settings(api_keys=DEV_API_KEYS).api_key_entries == settings().api_key_entries


def test_keys_roles_and_names() -> None:
    entries = parse_api_keys(" k1:client , k2:operator:ops ,, k3:client:shop, k4:client:shop")
    assert entries == [
        ApiKeyEntry("k1", "client", key_fingerprint("k1")),
        ApiKeyEntry("k2", "operator", "ops"),
        ApiKeyEntry("k3", "client", "shop"),  # two keys, one principal: a key rotation
        ApiKeyEntry("k4", "client", "shop"),
    ]
    assert key_fingerprint("k1").startswith("key-") and "k1" not in key_fingerprint("k1")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("sekrit1:admin", "entry 1: the role must be one of client, operator"),
        ("ok:client,sekrit1:client:bad name", "entry 2: the name must be"),
        ("sekrit1:client,sekrit1:operator", "entry 2: the same key is listed twice"),
        ("sekrit1:client:x,sekrit2:operator:x", "name 'x' is given both roles"),
        (":client", "entry 1: the key must be printable ASCII"),
        ("sekrit 1:client", "entry 1: the key must be printable ASCII"),
    ],
)
def test_a_bad_api_keys_value_stops_any_start_without_echoing_keys(value: str, reason: str) -> None:
    bad = settings(api_keys=value)  # loading settings must not print the value either
    for attempt in (bad.check_production_ready, lambda: bad.api_key_entries):
        with pytest.raises(ValueError) as raised:
            attempt()
        assert reason in str(raised.value)
        assert "sekrit" not in str(raised.value)


def test_secrets_stay_out_of_repr() -> None:
    text = repr(settings(**GOOD))
    for name in ("api_keys", "carrier_webhook_secrets", "download_link_secret", "encryption_key"):
        assert str(GOOD[name]) not in text


def test_webhook_secrets_come_from_both_names() -> None:
    both = settings(carrier_webhook_secrets="new, old", carrier_webhook_secret="old,older")
    assert both.webhook_secrets == ["new", "old", "older"]
    assert both.webhook_secret == "new,old,older"
    assert settings().webhook_secrets == [DEV_WEBHOOK_SECRET]


def test_codec_origins_default_to_the_temporal_ui() -> None:
    assert settings(temporal_ui_port=9233).codec_origins == [
        "http://localhost:9233",
        "http://127.0.0.1:9233",
    ]
    assert settings(codec_cors_origins="https://ui.example/, https://b.example").codec_origins == [
        "https://ui.example",
        "https://b.example",
    ]


def test_a_safe_production_configuration_starts() -> None:
    production = settings(**GOOD)
    production.check_production_ready(serving_api=True)
    assert [e.name for e in production.api_key_entries] == ["shop", "ops"]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"api_keys": None}, "API_KEYS is not set"),
        (
            {"api_keys": f"{GOOD_KEY}:client:shop,omk_dev_operator:operator:dev-operator"},
            "API_KEYS holds development key(s) of dev-operator",
        ),
        ({"api_keys": "short_key:client:shop"}, "the key(s) of shop are shorter than"),
        ({"carrier_webhook_secrets": None}, "CARRIER_WEBHOOK_SECRETS (or CARRIER_WEBHOOK_SECRET)"),
        (
            {"carrier_webhook_secrets": f"whsec_live_1,{DEV_WEBHOOK_SECRET}"},
            "CARRIER_WEBHOOK_SECRETS holds the development webhook secret",
        ),
        (
            {"carrier_webhook_secret": DEV_WEBHOOK_SECRET},
            "CARRIER_WEBHOOK_SECRETS holds the development webhook secret",
        ),
        ({"download_link_secret": None}, "DOWNLOAD_LINK_SECRET is not set"),
        ({"download_link_secret": DEV_DOWNLOAD_SECRET}, "DOWNLOAD_LINK_SECRET is the development"),
        ({"tracking_link_secret": None}, "TRACKING_LINK_SECRET is not set"),
        ({"tracking_link_secret": DEV_TRACKING_SECRET}, "TRACKING_LINK_SECRET is the development"),
        ({"encryption_key": None}, "ENCRYPTION_KEY is not set"),
    ],
)
def test_production_refuses_each_unsafe_setting_by_name(
    changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(RuntimeError, match="refusing to start with APP_ENV=production") as raised:
        settings(**{**GOOD, **changes}).check_production_ready(serving_api=True)
    assert named in str(raised.value)
    assert str(raised.value).count(";") == 0  # only the one setting that is wrong is named


def test_production_names_everything_at_once() -> None:
    with pytest.raises(RuntimeError) as raised:
        settings(app_env="production").check_production_ready(serving_api=True)
    for name in (
        "API_KEYS",
        "CARRIER_WEBHOOK_SECRETS",
        "DOWNLOAD_LINK_SECRET",
        "TRACKING_LINK_SECRET",
        "ENCRYPTION_KEY",
    ):
        assert name in str(raised.value)


def test_a_worker_needs_no_api_keys_but_refuses_development_ones() -> None:
    settings(**{**GOOD, "api_keys": None}).check_production_ready()
    with pytest.raises(RuntimeError, match="development key"):
        settings(**{**GOOD, "api_keys": DEV_API_KEYS}).check_production_ready()


def test_development_defaults_are_refused_in_production() -> None:
    production = settings(app_env="production")
    with pytest.raises(RuntimeError, match="API_KEYS must be set"):
        _ = production.api_key_entries
    with pytest.raises(RuntimeError, match="CARRIER_WEBHOOK_SECRETS must be set"):
        _ = production.webhook_secrets
    settings().check_production_ready()  # development: nothing to refuse


def test_update_wait_and_key_ttl_are_durations_above_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings().update_wait == timedelta(seconds=20)
    assert settings().idempotency_key_ttl == timedelta(days=1)
    monkeypatch.setenv("UPDATE_WAIT", "1.5")
    monkeypatch.setenv("IDEMPOTENCY_KEY_TTL", "PT12H")
    configured = settings()
    assert configured.update_wait == timedelta(seconds=1.5)
    assert configured.idempotency_key_ttl == timedelta(hours=12)
    for name in ("UPDATE_WAIT", "IDEMPOTENCY_KEY_TTL"):
        monkeypatch.setenv(name, "0")
        with pytest.raises(ValidationError):
            settings()
        monkeypatch.delenv(name)
