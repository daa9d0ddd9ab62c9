"""docker-compose.yml stays valid and keeps the shape the README promises.

`docker-compose config` runs when the command is installed (it needs no Docker engine); the
structure is checked from the YAML everywhere, so CI without docker-compose still catches a
worker that could no longer be scaled or a service that went missing.
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

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


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    return dict(document["services"])


def test_docker_compose_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("docker-compose is not installed: `docker-compose config` not run")
    result = subprocess.run(
        [*command, "--file", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


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
    assert services["db-init"]["command"] == ["python", "database.py"]
    assert services["api"]["build"] == services["worker"]["build"] == "."


def test_worker_can_be_scaled(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["environment"]["SMTP_HOST"] == "mailpit"
    assert str(worker["environment"]["SMTP_PORT"]) == "1025"


def test_app_waits_for_its_one_shot_setup(services: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        depends_on = services[name]["depends_on"]
        for setup in ("db-init", "temporal-init"):
            assert depends_on[setup]["condition"] == "service_completed_successfully", name


def test_search_attributes_are_registered_by_temporal_init() -> None:
    script = (ROOT / "deploy/temporal/setup-namespace.sh").read_text()
    assert "for name in OrderStatus CustomerId" in script
