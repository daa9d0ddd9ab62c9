"""scripts/run.py, the `make run` supervisor, driven as a user drives it.

The busy-port tests stop before anything starts, so they take a second. The lifecycle test
starts the real stack (dev server, worker, API) on free ports with a temporary DATA_DIR, places
an order, kills the worker, stops everything with SIGINT, checks that no process is left, and
starts again to find the order kept: about half a minute, marked e2e. The restart test kills
the dev server (restarted on its history, the worker and API reconnecting) and presses Ctrl-C
while pick/pack runs: the worker gets the time its graceful shutdown needs (about 20 s, e2e).
"""

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from models.wire import RECONCILE_SCHEDULE, order_workflow_id
from tests.conftest import eventually, free_port

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "scripts" / "run.py"
ON_LINUX = sys.platform == "linux"
HAS_API = (ROOT / "api" / "main.py").exists()
DEV_CLIENT = {"Authorization": "Bearer omk_dev_client"}  # make run's development client key


class Supervisor:
    """scripts/run.py as a child process, its output collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def printed(self, text: str, within: float = 60.0) -> None:
        async def output() -> str:
            if self.proc.returncode is not None:
                raise AssertionError(f"run.py exited ({self.proc.returncode}):\n{self.output}")
            return self.output

        await eventually(output, lambda out: text in out, within=within, interval=0.1)

    async def exit_code(self, within: float) -> int:
        code = await asyncio.wait_for(self.proc.wait(), within)
        await self._reader
        return code

    async def stop(self) -> int:
        """What Ctrl-C does: SIGINT to the supervisor, which must exit 0 within seconds."""
        self.proc.send_signal(signal.SIGINT)
        return await self.exit_code(within=20)


async def start_run(env: dict[str, str]) -> Supervisor:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(RUN),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    return Supervisor(proc)


def run_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEMPORAL_", "API_", "SMTP_", "DATABASE_URL"))
    }
    env.update(
        DATA_DIR=str(data_dir),
        API_PORT=str(free_port()),
        TEMPORAL_PORT=str(free_port()),
        TEMPORAL_UI_PORT=str(free_port()),
        WORKER_METRICS_ADDRESS=f"127.0.0.1:{free_port()}",
        FULFILLMENT_DELAY="0.5",
        NO_COLOR="1",
    )
    env.update(overrides)
    return env


def processes_mentioning(marker: str) -> list[str]:
    """Live processes whose command line or environment mentions `marker` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marker.encode() in cmdline + environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {command}")
    return found


@pytest.fixture
def listener() -> Iterator[int]:
    """A port something already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("setting", ["API_PORT", "TEMPORAL_PORT"])
async def test_a_busy_port_is_named_and_nothing_starts(
    setting: str, listener: int, tmp_path: Path
) -> None:
    run = await start_run(run_env(tmp_path, **{setting: str(listener)}))
    assert await run.exit_code(within=30) == 1
    assert f"port {listener} is already in use ({setting})" in run.output
    assert "Traceback" not in run.output
    assert not (tmp_path / "temporal.db").exists()


async def test_an_existing_temporal_address_is_used_instead_of_starting_one(
    listener: int, tmp_path: Path
) -> None:
    # TEMPORAL_PORT is busy, but TEMPORAL_ADDRESS says to use a server elsewhere: no port check
    # for the dev server, and no dev server. Nothing answers there, so it gives up, clearly.
    dead = free_port()
    run = await start_run(
        run_env(tmp_path, TEMPORAL_PORT=str(listener), TEMPORAL_ADDRESS=f"127.0.0.1:{dead}")
    )
    await run.printed(f"using the Temporal server at 127.0.0.1:{dead}")
    assert await run.stop() == 0
    assert "starting the Temporal dev server" not in run.output
    assert "Traceback" not in run.output


@pytest.mark.e2e
@pytest.mark.skipif(not ON_LINUX, reason="checks for leftover processes through /proc")
@pytest.mark.skipif(not HAS_API, reason="api/main.py is not there yet: nothing to serve")
async def test_runs_restarts_stops_cleanly_and_keeps_orders(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = run_env(data_dir)
    api = f"http://localhost:{env['API_PORT']}"

    run = await start_run(env)
    try:
        await run.printed("Ctrl-C stops everything.")
        assert f"{api}/docs" in run.output
        # The database was brought to the latest migration before the worker and API started.
        assert "database: at migration" in run.output
        assert "database at the latest migration" in run.output
        ui = f"http://localhost:{env['TEMPORAL_UI_PORT']}/namespaces/default/workflows?query="
        assert ui in run.output
        curl = next(line for line in run.lines if line.startswith("curl -sS -X POST"))
        assert "cus_ada" in curl and "BOOK-DUNE" in curl and "tok_visa" in curl

        async with httpx.AsyncClient(base_url=api, timeout=10, headers=DEV_CLIENT) as http:
            placed = await http.post(
                "/orders",
                json={
                    "customer_id": "cus_ada",
                    "items": [{"sku": "BOOK-DUNE", "quantity": 1}],
                    "payment": {"token": "tok_visa"},
                },
            )
            assert placed.status_code == 202, placed.text
            order_id = placed.json()["order_id"]

            async def status() -> str:
                return str((await http.get(f"/orders/{order_id}")).json()["status"])

            await eventually(status, lambda s: s == "shipped", within=30)

            # Its emails link to the tracking page on the port this run serves, not 8000's.
            async def emails() -> list[str]:
                return [
                    BytesParser(policy=policy.default).parsebytes(path.read_bytes()).get_content()
                    for path in (data_dir / "outbox").glob(f"{order_id}_*.eml")
                ]

            sent = await eventually(emails, bool, what="the order's first email")
            assert all(f"{api}/track/{order_id}?" in body for body in sent), sent
            metrics = f"http://{env['WORKER_METRICS_ADDRESS']}/metrics"
            assert metrics in run.output  # the banner says where
            served = await http.get(metrics)
            assert served.status_code == 200 and "temporal_workflow_task_" in served.text
            assert f"{api}/metrics" in run.output
            assert "ordermill_orders_placed_total 1.0" in (await http.get("/metrics")).text
            # The console the banner names answers with its sign-in page.
            assert f"Console          {api}/console (operator key)" in run.output
            assert (await http.get("/console")).headers["location"] == "/console/sign-in"

        # The nightly reconciliation's Schedule, which the UI's Schedules page lists.
        assert f"schedule {RECONCILE_SCHEDULE} created: 0 2 * * * (UTC)" in run.output
        assert f"/namespaces/default/schedules/{RECONCILE_SCHEDULE}" in run.output
        temporal = await Client.connect(f"localhost:{env['TEMPORAL_PORT']}")

        async def schedules() -> list[str]:
            return [s.id async for s in await temporal.list_schedules()]

        await eventually(schedules, lambda ids: ids == [RECONCILE_SCHEDULE])  # visibility lags

        workers = [p for p in processes_mentioning(str(data_dir)) if "worker.py" in p]
        assert len(workers) == 1, workers
        os.kill(int(workers[0].split(":")[0]), signal.SIGKILL)
        await run.printed("worker was killed by SIGKILL")
        await run.printed("restarting in")

        assert await run.stop() == 0
        assert "Traceback" not in run.output
        assert processes_mentioning(str(data_dir)) == []
    finally:
        if run.proc.returncode is None:
            run.proc.kill()

    again = await start_run(env)
    try:
        await again.printed("Ctrl-C stops everything.")
        async with httpx.AsyncClient(base_url=api, timeout=10, headers=DEV_CLIENT) as http:
            kept = await http.get(f"/orders/{order_id}")
        assert kept.status_code == 200, kept.text
        assert kept.json()["status"] == "shipped"
        assert await again.stop() == 0
    finally:
        if again.proc.returncode is None:
            again.proc.kill()
    assert processes_mentioning(str(data_dir)) == []


@pytest.mark.e2e
@pytest.mark.skipif(not ON_LINUX, reason="finds the dev server's process through /proc")
@pytest.mark.skipif(not HAS_API, reason="api/main.py is not there yet: nothing to serve")
async def test_a_killed_temporal_is_restarted_and_ctrl_c_lets_pick_pack_finish(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    # Pick/pack outlasts the 5 s every other child gets to stop, within the worker's 10 s.
    env = run_env(data_dir, FULFILLMENT_DELAY="8")
    api = f"http://localhost:{env['API_PORT']}"
    run = await start_run(env)
    try:
        await run.printed("Ctrl-C stops everything.")
        (server,) = [p for p in processes_mentioning(str(data_dir)) if "start-dev" in p]
        os.kill(int(server.split(":")[0]), signal.SIGKILL)
        await run.printed("temporal was killed by SIGKILL")
        restart = next(line for line in run.lines if "temporal was killed by SIGKILL" in line)
        assert f"on the same history ({data_dir / 'temporal.db'})" in restart
        await run.printed(f"Temporal answers again at localhost:{env['TEMPORAL_PORT']}")

        # The API and the worker found the new server by themselves.
        async with httpx.AsyncClient(base_url=api, timeout=10, headers=DEV_CLIENT) as http:

            async def place() -> httpx.Response:
                return await http.post(
                    "/orders",
                    json={
                        "customer_id": "cus_ada",
                        "items": [{"sku": "BOOK-DUNE", "quantity": 1}],
                        "payment": {"token": "tok_visa"},
                    },
                )

            placed = await eventually(place, lambda r: r.status_code == 202, within=30)
        order_id = placed.json()["order_id"]
        temporal = await Client.connect(f"localhost:{env['TEMPORAL_PORT']}")
        handle = temporal.get_workflow_handle(order_workflow_id(order_id))

        async def packing() -> bool:
            return any(
                pending.activity_type.name == "pick_and_pack"
                and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                for pending in (await handle.describe()).raw_description.pending_activities
            )

        await eventually(packing, bool, within=30)
        # The worker that runs it is the first one: it outlived the server's restart.
        assert not [line for line in run.lines if line.startswith("run     | worker ")]

        assert await run.stop() == 0  # Ctrl-C while pick/pack runs
        assert "worker did not stop within" not in run.output
        shutdown = run.output[run.output.index("SIGINT: stopping everything") :]
        assert "shutting down: finishing running activities" in shutdown
        assert "worker stopped" in shutdown  # on its own, pick/pack finished
        assert "Traceback" not in run.output
        assert processes_mentioning(str(data_dir)) == []
    finally:
        if run.proc.returncode is None:
            run.proc.kill()
