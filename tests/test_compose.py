"""docker-compose.yml stays valid, fails closed and keeps the shape the README promises.

`docker-compose config` runs when the command is installed (it needs no Docker engine); the
structure is checked from the YAML everywhere, so CI without docker-compose still catches a
worker that could no longer be scaled, a port published to the world, a password written in
the file or a service that went missing.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.api.enums.v1 import IndexedValueType

from models.wire import SEARCH_ATTRIBUTES
from settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"


def compose_command() -> list[str] | None:
    """`docker-compose` (v1 or the v2 standalone binary), else the `docker compose` plugin."""
    if found := shutil.which("docker-compose"):
        return [found]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


# `.ci/run` fails on a skip of these: CI must check the compose file.
pytestmark = pytest.mark.compose


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    return dict(document["services"])


DEVELOPMENT_ENV = ROOT / "deploy" / "development.env"


def compose_config(*env_file: Path) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    if command is None:
        pytest.skip("docker-compose is not installed: `docker-compose config` not run")
    files = [arg for path in env_file for arg in ("--env-file", str(path))]
    return subprocess.run(
        [*command, "--file", str(COMPOSE_FILE), *files, "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        # Nothing of the developer's shell: only what the files give.
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")},
    )


def test_docker_compose_accepts_the_file_with_the_development_env() -> None:
    result = compose_config(DEVELOPMENT_ENV)
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_to_run_without_the_database_passwords(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = compose_config(empty)
    assert result.returncode != 0
    assert "PASSWORD" in result.stderr


def test_runs_temporal_ordermill_and_mail(services: dict[str, Any]) -> None:
    assert {
        "temporal-db",
        "temporal",
        "temporal-init",
        "temporal-ui",
        "db",
        "db-init",
        "api",
        "worker",
        "mailpit",
    } <= services.keys()
    # The one-shot job brings the database to the latest migration, before the app starts.
    assert services["db-init"]["command"] == ["python", "database.py"]
    assert services["api"]["build"] == services["worker"]["build"] == "."


def test_worker_can_be_scaled(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["environment"]["SMTP_HOST"] == "mailpit"
    assert str(worker["environment"]["SMTP_PORT"]) == "1025"
    # Each replica serves its metrics on its own container's interfaces, on no host port.
    address = worker["environment"]["WORKER_METRICS_ADDRESS"]
    assert address.startswith("0.0.0.0:")
    assert Settings(worker_metrics_address=address).worker_metrics_address == address


def test_the_worker_has_every_setting_the_app_has(services: dict[str, Any]) -> None:
    # The worker merges the shared environment rather than copying it, so none goes missing.
    shared = services["api"]["environment"]
    assert services["worker"]["environment"].items() >= shared.items()


ORDER_RULES = {
    "DELIVERY_TIMEOUT",
    "RETURN_WINDOW",
    "RETURN_ARRIVAL_TIMEOUT",
    "DOWNLOAD_LINK_TTL",
    "MAX_INQUIRIES",
    "RISK_REVIEW_THRESHOLD",
    "REVIEW_TIMEOUT",
    "BACKORDER_TIMEOUT",
    "AUTH_VALIDITY",
    "AUTH_RENEW_MARGIN",
}


def test_the_order_rules_can_be_set_for_the_api_and_the_worker(services: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        environment = services[name]["environment"]
        for rule in ORDER_RULES:
            assert environment.get(rule) == f"${{{rule}:-}}", (name, rule)
    # Each is a real setting, so a typo here cannot pass unnoticed.
    assert {rule.lower() for rule in ORDER_RULES} <= Settings.model_fields.keys()


def test_app_waits_for_its_one_shot_setup(services: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        depends_on = services[name]["depends_on"]
        for setup in ("db-init", "temporal-init"):
            assert depends_on[setup]["condition"] == "service_completed_successfully", name


# ---- it fails closed -------------------------------------------------------------------------


def test_production_is_the_default(services: dict[str, Any]) -> None:
    for name in ("api", "worker", "db-init"):
        assert services[name]["environment"]["APP_ENV"] == "${APP_ENV:-production}", name
    development = DEVELOPMENT_ENV.read_text()
    assert "APP_ENV=development" in development.splitlines()


def test_every_published_port_listens_on_loopback_unless_told(services: dict[str, Any]) -> None:
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert set(published) == {"api", "temporal-ui", "mailpit"}
    for name, ports in published.items():
        for port in ports:
            pattern = r"\$\{[A-Z_]+_BIND:-127\.0\.0\.1\}:\$\{[A-Z_]+_PORT:-\d+\}:\d+"
            assert re.fullmatch(pattern, str(port)), (name, port)


def test_the_temporal_frontend_is_only_on_the_compose_network(services: dict[str, Any]) -> None:
    assert "ports" not in services["temporal"]
    ui = services["temporal-ui"]["environment"]
    assert ui["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "${TEMPORAL_UI_DISABLE_WRITE_ACTIONS:-true}"


def test_no_password_or_key_is_written_in_it(services: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    for secret in ("omk_dev_", "whsec_dev", "dlsec_dev", "ordermill:ordermill@", "PWD: temporal"):
        assert secret not in text
    for name, variable in (
        ("db", "POSTGRES_PASSWORD"),
        ("temporal-db", "POSTGRES_PASSWORD"),
        ("temporal", "POSTGRES_PWD"),
    ):
        value = services[name]["environment"][variable]
        assert re.fullmatch(r"\$\{[A-Z_]+_PASSWORD:\?[^}]*\}", value), (name, value)
    url = services["api"]["environment"]["DATABASE_URL"]
    assert "${ORDERMILL_DB_PASSWORD:?" in url


def test_every_search_attribute_is_registered_by_temporal_init() -> None:
    script = (ROOT / "deploy/temporal/setup-namespace.sh").read_text()
    for key in SEARCH_ATTRIBUTES:
        kind = (
            "KeywordList"
            if key.indexed_value_type == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST
            else "Keyword"
        )
        assert f"{key.name}:{kind}" in script, key.name
