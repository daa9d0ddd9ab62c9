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

from api.routes.metrics import router as metrics_router
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


# Variables docker-compose refuses to run without (`${VAR:?...}`): no default is safe for them.
REQUIRED_VARIABLES = [
    "ORDERMILL_DB_PASSWORD",
    "TEMPORAL_DB_PASSWORD",
    "PROMETHEUS_API_KEY",
    "GRAFANA_ADMIN_PASSWORD",
]


@pytest.mark.parametrize("variable", REQUIRED_VARIABLES)
def test_docker_compose_refuses_to_run_without_each_required_variable(
    variable: str, tmp_path: Path
) -> None:
    lines = DEVELOPMENT_ENV.read_text().splitlines()
    assert any(line.startswith(f"{variable}=") for line in lines), "development.env sets it"
    without = tmp_path / "without.env"
    without.write_text("\n".join(line for line in lines if not line.startswith(f"{variable}=")))
    result = compose_config(without)
    assert result.returncode != 0
    assert f"set {variable}" in result.stderr


def test_runs_temporal_ordermill_and_mail(services: dict[str, Any]) -> None:
    assert {
        "temporal-db",
        "temporal",
        "temporal-init",
        "temporal-ui",
        "db",
        "db-init",
        "schedule-init",
        "api",
        "worker",
        "mailpit",
    } <= services.keys()
    # The one-shot job brings the database to the latest migration, before the app starts.
    assert services["db-init"]["command"] == ["python", "database.py"]
    # Another creates or updates the reconciliation's Schedule, once Temporal is set up.
    assert services["schedule-init"]["command"] == ["python", "schedules.py"]
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
    assert set(published) == {"api", "temporal-ui", "mailpit", "prometheus", "grafana", "jaeger"}
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
        ("grafana", "GF_SECURITY_ADMIN_PASSWORD"),
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


# ---- monitoring ------------------------------------------------------------------------------

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
# What a scrape job may say; anything else (another kind of discovery, relabelling) is something
# the checks below do not read, so it must not pass unread.
SCRAPE_JOB_KEYS = {"job_name", "metrics_path", "authorization", "static_configs", "dns_sd_configs"}


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    return config


@pytest.fixture(scope="module")
def scrape_jobs(prometheus_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in prometheus_config["scrape_configs"]}


def scrape_targets(job: dict[str, Any]) -> list[tuple[str, int]]:
    """(host, port) of every target a job names, static or found by DNS."""
    assert job.keys() <= SCRAPE_JOB_KEYS, job["job_name"]
    targets = []
    for static in job.get("static_configs", []):
        for target in static["targets"]:
            host, port = target.rsplit(":", 1)
            targets.append((host, int(port)))
    for dns in job.get("dns_sd_configs", []):
        # An A record carries no port (an SRV would, and compose serves none): the job's is it.
        assert dns["type"] == "A", job["job_name"]
        targets.extend((name, int(dns["port"])) for name in dns["names"])
    return targets


def metrics_port(name: str, service: dict[str, Any]) -> int:
    """The port a compose service serves its metrics on, inside the compose network."""
    address = service["environment"].get("WORKER_METRICS_ADDRESS")
    if address is not None:
        return int(address.rsplit(":", 1)[1])
    command = service.get("command", [])
    assert "--port" in command, f"{name} serves no metrics this test knows of"
    return int(command[command.index("--port") + 1])


def long_running_ordermill_services(services: dict[str, Any]) -> set[str]:
    """Services that run this repository's code and keep running (not the one-shot db-init)."""
    return {
        name
        for name, service in services.items()
        if service.get("build") == "." and service.get("restart") != "on-failure"
    }


def test_every_scrape_target_is_a_compose_service_on_the_port_it_serves(
    services: dict[str, Any], scrape_jobs: dict[str, dict[str, Any]]
) -> None:
    for job in scrape_jobs.values():
        assert job.get("metrics_path", "/metrics") == "/metrics", job["job_name"]
        for host, port in scrape_targets(job):
            assert host in services, (job["job_name"], host)
            assert port == metrics_port(host, services[host]), (job["job_name"], host, port)
    # The API's container port is the one uvicorn listens on, so the target reaches it.
    assert services["api"]["ports"][0].endswith(f":{metrics_port('api', services['api'])}")
    assert "/metrics" in {getattr(route, "path", None) for route in metrics_router.routes}


def test_every_ordermill_service_that_keeps_running_is_scraped(
    services: dict[str, Any], scrape_jobs: dict[str, dict[str, Any]]
) -> None:
    scraped = {host for job in scrape_jobs.values() for host, _ in scrape_targets(job)}
    ordermill = long_running_ordermill_services(services)
    assert ordermill == {"api", "worker"}
    assert ordermill <= scraped
    assert scraped <= set(services)


def test_every_worker_replica_is_scraped(scrape_jobs: dict[str, dict[str, Any]]) -> None:
    # A static `worker:9464` would reach whichever replica the name resolved to first; an A
    # lookup of the service name is every replica's address, each a target of its own.
    (job,) = [job for job in scrape_jobs.values() if ("worker", 9464) in scrape_targets(job)]
    assert "static_configs" not in job
    assert [dns["names"] for dns in job["dns_sd_configs"]] == [["worker"]]


def test_prometheus_sends_an_operator_key_given_only_in_the_environment(
    services: dict[str, Any], scrape_jobs: dict[str, dict[str, Any]]
) -> None:
    prometheus = services["prometheus"]
    environment = prometheus["environment"]
    assert re.fullmatch(r"\$\{PROMETHEUS_API_KEY:\?[^}]+\}", environment["PROMETHEUS_API_KEY"])
    key_file = Path(environment["PROMETHEUS_API_KEY_FILE"])
    # Written at start on a tmpfs, so the key is neither in the repository nor on a volume.
    assert any(str(entry).split(":")[0] == str(key_file.parent) for entry in prometheus["tmpfs"])
    assert prometheus["entrypoint"] == ["/bin/sh", "/etc/prometheus/start.sh"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    api_job = next(j for j in scrape_jobs.values() if ("api", 8000) in scrape_targets(j))
    assert api_job["authorization"] == {"type": "Bearer", "credentials_file": str(key_file)}
    # The workers' endpoint has no authentication of its own: the compose network is its fence.
    worker_job = next(j for j in scrape_jobs.values() if ("worker", 9464) in scrape_targets(j))
    assert "authorization" not in worker_job


def run_start_script(tmp_path: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """deploy/prometheus/start.sh, with a stand-in `prometheus` that reports what it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "prometheus"
    stand_in.write_text(
        "#!/bin/sh\n"
        'echo "args: $*"\n'
        'echo "key: $(cat "$PROMETHEUS_API_KEY_FILE")"\n'
        'echo "mode: $(stat -c %a "$PROMETHEUS_API_KEY_FILE")"\n'
        'echo "environment: ${PROMETHEUS_API_KEY-unset}"\n'
    )
    stand_in.chmod(0o755)
    return subprocess.run(
        ["/bin/sh", str(PROMETHEUS_DIR / "start.sh"), "--config.file=x.yml"],
        capture_output=True,
        text=True,
        timeout=10,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", **environment},
    )


def test_the_start_script_hands_prometheus_the_key_in_a_file_of_its_own(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    result = run_start_script(
        tmp_path, PROMETHEUS_API_KEY="omk_test_key", PROMETHEUS_API_KEY_FILE=str(key_file)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "args: --config.file=x.yml",
        "key: omk_test_key",
        "mode: 600",
        "environment: unset",
    ]


def test_the_start_script_refuses_to_start_prometheus_without_a_key(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    result = run_start_script(tmp_path, PROMETHEUS_API_KEY_FILE=str(key_file))
    assert result.returncode != 0
    assert "PROMETHEUS_API_KEY" in result.stderr
    assert result.stdout == "" and not key_file.exists()


COLLECTOR_CONFIG = ROOT / "deploy" / "otel-collector" / "config.yaml"


def test_the_api_and_the_workers_send_traces_to_the_collector(services: dict[str, Any]) -> None:
    collector = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    receiver = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert receiver.startswith("0.0.0.0:")  # reachable from the other containers
    for name in ("api", "worker"):
        endpoint = services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        # The standard variable, OTLP over HTTP (port 4318): the collector's HTTP receiver.
        url = re.fullmatch(r"\$\{OTEL_EXPORTER_OTLP_ENDPOINT:-http://([a-z-]+):(\d+)\}", endpoint)
        assert url is not None, (name, endpoint)
        assert url[1] in services and url[2] == receiver.rsplit(":", 1)[1], (name, endpoint)
    mounted = "./deploy/otel-collector/config.yaml:/etc/otelcol/ordermill.yaml:ro"
    assert mounted in services["otel-collector"]["volumes"]
    assert services["otel-collector"]["command"] == ["--config=/etc/otelcol/ordermill.yaml"]
    assert "ports" not in services["otel-collector"]  # the compose network's alone


def test_the_collector_passes_every_trace_on_to_jaeger(services: dict[str, Any]) -> None:
    collector = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    (pipeline,) = collector["service"]["pipelines"].values()
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= collector[kind].keys(), kind  # each one is configured
    (exporter,) = (collector["exporters"][name] for name in pipeline["exporters"])
    host, port = exporter["endpoint"].rsplit(":", 1)
    assert host == "jaeger" and host in services
    assert port == "4317"  # Jaeger's OTLP gRPC receiver
    # Jaeger's UI is published (on loopback, above); its receivers are not.
    assert [str(p).rsplit(":", 1)[1] for p in services["jaeger"]["ports"]] == ["16686"]


GRAFANA_DIR = ROOT / "deploy" / "grafana"


def test_grafana_lets_in_only_whoever_signs_in(services: dict[str, Any]) -> None:
    environment = services["grafana"]["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert environment["GF_USERS_ALLOW_SIGN_UP"] == "false"
    # No default: compose refuses to run without one (above), so there is no admin/admin.
    assert environment["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_grafana_is_provisioned_from_deploy_with_the_compose_services(
    services: dict[str, Any], prometheus_config: dict[str, Any]
) -> None:
    volumes = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    provisioning = GRAFANA_DIR / "provisioning"
    dashboards = yaml.safe_load((provisioning / "dashboards/ordermill.yaml").read_text())
    (provider,) = dashboards["providers"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in volumes
    assert provider["allowUiUpdates"] is False  # the JSON in the repository is the dashboard
    datasources = yaml.safe_load((provisioning / "datasources/ordermill.yaml").read_text())
    by_type = {d["type"]: d for d in datasources["datasources"]}
    for kind, service in (("prometheus", "prometheus"), ("jaeger", "jaeger")):
        host, port = by_type[kind]["url"].removeprefix("http://").split(":")
        assert host == service and host in services, kind
        assert [str(p).rsplit(":", 1)[1] for p in services[service]["ports"]] == [port], kind
    # $__rate_interval spans four scrapes of the datasource's interval: it must be Prometheus's.
    interval = by_type["prometheus"]["jsonData"]["timeInterval"]
    assert interval == prometheus_config["global"]["scrape_interval"]
