"""The fault suite's machinery: processes the tests can `kill -9`, outside systems they can
take down, and the checks every order must pass once the fault is over.

- `DevServer`: `temporal server start-dev` on a history file of the test's own; killed, it is
  started again on the same file and port.
- `Workers`: `python worker.py` subprocesses (the real worker, nothing in-process), all sharing
  one DATA_DIR; each can be killed and another started.
- `MailServer`: a real SMTP server on loopback (aiosmtpd) that can go down and come back on
  the same port, and can hold a message's DATA unanswered (the client waiting for its 250).
- `settle` / `assert_settled`: carry orders to their end (the carrier's "delivered" for every
  parcel) and check the end: its status, one authorization and one capture per parcel in the
  card processor's ledger, no open hold and no failed workflow task in the history.

Every trigger is an observed state (a pending activity, a status, a row, a log line), never a
sleep.
"""

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from sqlalchemy import make_url
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from database import init_database, make_engine
from models.orders import (
    OrderItem,
    OrderStatus,
    OrderTimeouts,
    OrderView,
    PaymentMethod,
    PlaceOrderInput,
)
from models.shipments import CarrierEvent, CarrierStatus
from models.tables import PaymentTransaction, SentEmail
from models.wire import ORDER_STATUS, QUERY_STATUS, SEARCH_ATTRIBUTES, search_attribute_type
from temporal_client import start_order
from tests.conftest import (
    eventually,
    free_port,
    fresh_postgres_database,
    new_id,
    venv_binary,
)

REPO = Path(__file__).resolve().parents[2]
Handle = WorkflowHandle[Any, OrderView]

# Two parcels: Neuromancer ships from WH-EAST, Earthsea from WH-WEST.
TWO_PARCELS = [
    OrderItem(sku="BOOK-NEUROMANCER", quantity=1),
    OrderItem(sku="BOOK-EARTHSEA", quantity=1),
]
ONE_PARCEL = [OrderItem(sku="BOOK-DUNE", quantity=1)]


# ---- Temporal ------------------------------------------------------------------------------


class PortTaken(AssertionError):
    """The dev server exited at start because a port it was given was taken meanwhile."""


class DevServer:
    """The Temporal dev server as a process of the test's own, its history in a file.

    Every port it serves on is the test's choice (gRPC, HTTP API, metrics; free_port keeps them
    out of the kernel's ephemeral range), so a restart comes back where workers and clients
    look. It "answers" only once this process listens on its port and answers as a frontend:
    Client.connect alone also succeeds against any gRPC server, e.g. another dev server's
    history service, since it accepts an unimplemented GetSystemInfo as an old server's.
    """

    def __init__(self, directory: Path) -> None:
        self.db = directory / "temporal.db"
        self.log = directory / "temporal.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # where the current start's lines begin
        self._choose_ports()

    def _choose_ports(self) -> None:
        self.port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it on its ports and file (again, after a kill); `answering` waits for it."""
        argv = [
            venv_binary("temporal"),
            *("server", "start-dev", "--headless", "--log-level", "error"),
            *("--db-filename", str(self.db), "--ip", "127.0.0.1", "--port", str(self.port)),
            *("--http-port", str(self.http_port), "--metrics-port", str(self.metrics_port)),
            *(f"--search-attribute={k.name}={search_attribute_type(k)}" for k in SEARCH_ATTRIBUTES),
        ]
        with self.log.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"--- {datetime.now():%H:%M:%S.%f} start on {self.address}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    async def first_start(self, tries: int = 3) -> None:
        """Start it and wait until it answers. Should a port it was given be taken between the
        choice and its bind (another process on the machine), it exits at once: only then, and
        only on a first start, it starts again on fresh ports."""
        for attempt in range(1, tries + 1):
            self.start()
            try:
                await self.answering()
                return
            except PortTaken:
                if attempt == tries:
                    raise
                self._choose_ports()

    async def answering(self, within: float = 30) -> None:
        """Until this process listens on its port and a client's GetSystemInfo gets an answer;
        its exit fails at once, with its exit code and log."""

        async def probe() -> str:
            process = self.process
            assert process is not None, "start() the dev server first"
            if process.poll() is not None:
                this_start = self.log.read_bytes()[self._log_offset :]
                failure = PortTaken if b"address already in use" in this_start else AssertionError
                raise failure(f"the dev server exited while starting:\n{self.report()}")
            if not self._listening(process.pid):
                return f"not listening on {self.address} yet"
            try:
                client = await Client.connect(self.address, data_converter=pydantic_data_converter)
                await client.workflow_service.get_system_info(GetSystemInfoRequest())
            except (RuntimeError, RPCError) as err:
                return f"listening, not answering yet: {err}"
            return "answering"

        await eventually(
            probe,
            lambda state: state == "answering",
            within=within,
            interval=0.2,
            what=f"the dev server to answer on {self.address}",
            show=lambda state: f"{state}\n{self.report()}",
        )

    def _listening(self, pid: int) -> bool:
        try:
            sockets = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:  # exited meanwhile: the next probe says so
            return False
        return any(
            s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == self.port
            for s in sockets
        )

    async def connect(self, within: float = 30) -> Client:
        """A client, once the server answers."""
        await self.answering(within)
        return await Client.connect(self.address, data_converter=pydantic_data_converter)

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind; what it had not written to its file is lost."""
        assert self.process is not None
        self.process.kill()
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def report(self, tail: int = 3000) -> str:
        """Whether it runs, or how it ended, and the end of its log: what any failure of a test
        that depends on it must show."""
        process = self.process
        if process is None:
            state = "never started"
        elif (code := process.poll()) is None:
            state = f"running (pid {process.pid})"
        elif code < 0:
            state = f"exited, killed by {signal.Signals(-code).name} (pid {process.pid})"
        else:
            state = f"exited with code {code} (pid {process.pid})"
        text = self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""
        return f"--- dev server on {self.address}: {state}\n--- {self.log.name}:\n{text}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
async def dev_server(tmp_path: Path) -> AsyncIterator[DevServer]:
    server = DevServer(tmp_path)
    try:
        await server.first_start()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(dev_server: DevServer) -> Client:
    return await dev_server.connect()


# ---- the worker ----------------------------------------------------------------------------


class Workers:
    """`python worker.py` processes against one dev server, sharing one DATA_DIR."""

    def __init__(self, tmp_path: Path, server: DevServer) -> None:
        self._tmp = tmp_path
        self.server = server
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.database_url = f"sqlite:///{self.data_dir / 'ordermill.db'}"
        self.started: list[subprocess.Popen[bytes]] = []
        # Nothing of the developer's own setup: no TEMPORAL_API_KEY/TLS/profile, DB or SMTP.
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TEMPORAL_", "SMTP_"))
            and key not in ("DATABASE_URL", "APP_ENV", "FULFILLMENT_DELAY")
        }
        self.env |= {
            "TEMPORAL_ADDRESS": server.address,
            "DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
            "FULFILLMENT_DELAY": "1",
        }

    def use_database(self, url: str, *, through: str | None = None) -> None:
        """The database the test reads (`url`), and the worker's way to it (`through`)."""
        self.database_url = url
        self.env["DATABASE_URL"] = through or url

    def migrate(self) -> None:
        """What `make run` does before it starts a worker: the database at head."""
        init_database(self.database_url).dispose()

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        log = self._log(len(self.started)).open("wb")
        process = subprocess.Popen(
            [sys.executable, str(REPO / "worker.py")],
            cwd=self._tmp,  # no stray .env of the developer's
            env=self.env | env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.started.append(process)
        return process

    def kill(self) -> None:
        """SIGKILL the running worker: no graceful shutdown, its activities just stop."""
        process = self.started[-1]
        process.kill()
        assert process.wait(timeout=10) == -signal.SIGKILL

    async def polling(self, within: float = 30) -> None:
        """Until the newest worker says it polls (it connected and registered).

        The dev server down fails this at once: no test here starts a worker before its server,
        so the worker's own wait for Temporal at start-up (TEMPORAL_CONNECT_TIMEOUT) can never
        hide a dead one."""
        index = len(self.started) - 1

        async def log() -> str:
            if (code := self.started[index].poll()) is not None:
                raise AssertionError(f"worker {index} exited with code {code}")
            if not self.server.alive():
                raise AssertionError(f"the dev server is down while worker {index} starts")
            return self._log(index).read_text(errors="replace")

        try:
            await eventually(
                log,
                lambda text: "worker polling task queue" in text,
                within=within,
                what=f"worker {index} to poll its task queue",
                show=lambda text: f"its log's last line: {text.strip().rpartition(chr(10))[2]!r}",
            )
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n{self.logs()}") from None

    def logs(self) -> str:
        """Every worker's log and the dev server's state and log: what a failure must show."""
        workers = [
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self._tmp.glob("worker-*.log"))
        ]
        return "\n".join([*workers, self.server.report()])

    def _log(self, index: int) -> Path:
        return self._tmp / f"worker-{index}.log"

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


@pytest.fixture
def workers(tmp_path: Path, dev_server: DevServer) -> Iterator[Workers]:
    pool = Workers(tmp_path, dev_server)
    try:
        yield pool
    finally:
        pool.stop_all()


# ---- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database of this test's own on the PostgreSQL of TEST_POSTGRES_URL."""
    with fresh_postgres_database("ordermill_fault") as url:
        yield url


class TcpProxy:
    """127.0.0.1:<port> forwarded to a target; `stop` makes the port refuse connections and cuts
    every connection through it, as a database that goes away does; `start` brings it back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()
        await self._server.wait_closed()
        self._server = None

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        self._links -= {writer, up_writer}

    def url(self, database_url: str) -> str:
        """`database_url` with its host and port replaced by the proxy's."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(1 << 16):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        sink.transport.abort()


# ---- SMTP ------------------------------------------------------------------------------------


class MailServer:
    """A real SMTP server on a fixed loopback port that the test takes down and brings back.

    `hold(predicate)` keeps the DATA of matching messages unanswered until `release()`: the
    message is in (the mail server has it, as one whose client times out after the final dot
    would), but the sender is still waiting for its 250.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._hold: Callable[[EmailMessage], bool] | None = None
        self._held: list[EmailMessage] = []
        self._released = threading.Event()
        self._controller: Controller | None = None

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self._messages.append(message)
            held = self._hold is not None and self._hold(message)
            if held:
                self._held.append(message)
        if held:
            await asyncio.to_thread(self._released.wait)
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        """Down: the port refuses connections."""
        if self._controller is not None:
            self.release()
            self._controller.stop()
            self._controller = None

    def hold(self, predicate: Callable[[EmailMessage], bool]) -> None:
        self._released.clear()
        self._hold = predicate

    def release(self) -> None:
        self._hold = None
        self._released.set()

    def held(self) -> list[EmailMessage]:
        with self._lock:
            return list(self._held)

    def for_order(self, order_id: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self._messages if m["X-Ordermill-Order"] == order_id]


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    server = MailServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ---- orders ----------------------------------------------------------------------------------


async def place(
    client: Client,
    items: list[OrderItem],
    *,
    prefix: str = "fault",
    return_window: timedelta = timedelta(seconds=2),
) -> Handle:
    return await start_order(
        client,
        PlaceOrderInput(
            order_id=new_id(prefix),
            customer_id="cus_ada",
            items=items,
            payment=PaymentMethod(token="tok_visa"),
            placed_at=datetime.now(UTC),
            timeouts=OrderTimeouts(return_window=return_window),
        ),
    )


def order_id(handle: Handle) -> str:
    return handle.id.removeprefix("order-")


async def status(handle: Handle) -> str | None:
    """The status the server knows (the OrderStatus search attribute): no worker needed."""
    try:
        description = await handle.describe()
    except RPCError:  # the server is down or restarting
        return None
    return description.typed_search_attributes.get(ORDER_STATUS)


async def view(handle: Handle) -> OrderView:
    return await handle.query(QUERY_STATUS, result_type=OrderView)


async def reaches(handle: Handle, wanted: OrderStatus, within: float = 60) -> None:
    await eventually(
        lambda: status(handle),
        lambda s: s == wanted.value,
        within=within,
        what=f"{handle.id} to reach {wanted.value}",
    )


async def activity_started(handle: Handle, activity: str, count: int = 1) -> bool:
    """Whether `count` attempts of `activity` are running on a worker right now."""
    try:
        description = await handle.describe()
    except RPCError:
        return False
    running = [
        pending
        for pending in description.raw_description.pending_activities
        if pending.activity_type.name == activity
        and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    ]
    return len(running) >= count


async def deliver(handle: Handle, shipped: OrderView) -> None:
    """The carrier's "delivered" for every parcel (the signal a signed webhook sends)."""
    for parcel in shipped.shipments:
        assert parcel.tracking_number is not None
        await handle.signal(
            "carrier_event",
            CarrierEvent(
                event_id=f"{parcel.tracking_number}-delivered",
                tracking_number=parcel.tracking_number,
                status=CarrierStatus.DELIVERED,
                occurred_at=datetime.now(UTC),
            ),
        )


# Every parcel with the carrier, or further on.
SHIPPED_OR_LATER = {
    OrderStatus.SHIPPED.value,
    OrderStatus.DELIVERED.value,
    OrderStatus.COMPLETED.value,
}


async def settle(handle: Handle, within: float = 90) -> OrderView:
    """Carry the order to its end: shipped, delivered, its return window closed. (A parcel
    already delivered gets its "delivered" again: a duplicate event, which changes nothing.)"""
    await eventually(
        lambda: status(handle),
        lambda s: s in SHIPPED_OR_LATER,
        within=within,
        what=f"{handle.id} to ship",
    )
    shipped = await view(handle)
    await deliver(handle, shipped)
    try:
        return await asyncio.wait_for(handle.result(), within)
    except TimeoutError:  # an AssertionError, so the test adds the workers' and server's logs
        raise AssertionError(
            f"{handle.id} did not end within {within}s of its delivery; "
            f"its status: {await status(handle)}"
        ) from None


def ledger(database_url: str, order: str) -> list[tuple[str, str]]:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            rows = session.exec(
                select(PaymentTransaction).where(PaymentTransaction.order_id == order)
            ).all()
            return sorted((row.kind, row.status) for row in rows)
    finally:
        engine.dispose()


def unsent_emails(database_url: str, order: str) -> list[str]:
    """Emails recorded for the order and not (yet) marked sent."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            rows = session.exec(
                select(SentEmail).where(
                    SentEmail.order_id == order, col(SentEmail.sent_at).is_(None)
                )
            ).all()
            return sorted(row.kind for row in rows)
    finally:
        engine.dispose()


async def assert_settled(
    handle: Handle, final: OrderView, database_url: str, *, parcels: int
) -> None:
    """Where every order of this suite must end, whatever happened on its way."""
    oid = order_id(handle)
    assert final.status is OrderStatus.COMPLETED, final.status
    assert final.holds == [], final.holds
    assert final.payment.captured == final.payment.authorized > 0
    assert (
        ledger(database_url, oid)
        == [("authorize", "approved")] + [("capture", "approved")] * parcels
    )
    history = await handle.fetch_history()
    failed = [
        event.workflow_task_failed_event_attributes.failure.message
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert failed == [], failed


def assert_emailed(mail: MailServer, oid: str, kinds: list[str]) -> None:
    """Every email arrived at least once; a second copy is the same email (its Message-ID)."""
    messages = mail.for_order(oid)
    assert sorted(set(str(m["X-Ordermill-Kind"]) for m in messages)) == sorted(set(kinds))
    by_key: dict[str, set[str]] = {}
    for message in messages:
        by_key.setdefault(str(message["X-Ordermill-Key"]), set()).add(str(message["Message-ID"]))
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
