"""Crash test: `kill -9` the worker process while it picks and packs an order.

The worker runs as a real subprocess (`python worker.py`) against a dev server of this test's
own: the shared e2e stack's in-process worker also polls the `orders` task queue and would
otherwise take the order. After the kill, a new worker process must carry the order on to
`shipped`, and the card processor's ledger must show one authorization and one capture.
"""

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from database import init_database, make_engine
from models.orders import OrderItem, OrderStatus, OrderView, PaymentMethod, PlaceOrderInput
from models.tables import PaymentTransaction
from models.wire import QUERY_STATUS, SEARCH_ATTRIBUTES
from temporal_client import start_order
from tests.conftest import eventually, new_id, venv_binary

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# Long enough to catch the first worker mid pick/pack; the restarted one is quick, to keep the
# test short (the retry still waits out pick/pack's 10 s heartbeat timeout).
FIRST_FULFILLMENT_DELAY = "20"
RESTARTED_FULFILLMENT_DELAY = "1"

WorkerFactory = Callable[[str], subprocess.Popen[bytes]]


@pytest.fixture
async def crash_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def worker_processes(
    crash_server: WorkflowEnvironment, tmp_path: Path
) -> Iterator[tuple[WorkerFactory, Path]]:
    """Starts `python worker.py` processes sharing one DATA_DIR; kills them all afterwards."""
    data_dir = tmp_path / "data"
    started: list[subprocess.Popen[bytes]] = []
    # Nothing of the developer's own setup: no TEMPORAL_API_KEY/TLS/profile, DB or SMTP.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TEMPORAL_") and key not in ("SMTP_HOST", "DATABASE_URL", "APP_ENV")
    }
    env |= {
        "TEMPORAL_ADDRESS": crash_server.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": crash_server.client.namespace,
        "DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
    }

    def start(fulfillment_delay: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, str(REPO / "worker.py")],
            cwd=tmp_path,  # no stray .env of the developer's
            env=env | {"FULFILLMENT_DELAY": fulfillment_delay},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        started.append(process)
        return process

    data_dir.mkdir(exist_ok=True)
    # What `make run` does before it starts a worker: the database at head.
    init_database(f"sqlite:///{data_dir / 'ordermill.db'}").dispose()
    try:
        yield start, data_dir
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def worker_logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
        for log in sorted(tmp_path.glob("worker-*.log"))
    )


async def test_killed_worker_mid_pick_pack_the_order_still_ships_charging_once(
    crash_server: WorkflowEnvironment,
    worker_processes: tuple[WorkerFactory, Path],
    tmp_path: Path,
) -> None:
    start_worker, data_dir = worker_processes
    first = start_worker(FIRST_FULFILLMENT_DELAY)
    order_id = new_id("crash")
    handle = await start_order(
        crash_server.client,
        PlaceOrderInput(
            order_id=order_id,
            customer_id="cus_ada",
            items=[OrderItem(sku="BOOK-DUNE", quantity=1)],
            payment=PaymentMethod(token="tok_visa"),
            placed_at=datetime.now(UTC),
        ),
    )

    async def status() -> OrderView:
        return await handle.query(QUERY_STATUS, result_type=OrderView)

    async def pick_pack_started() -> bool:
        description = await handle.describe()
        return any(
            pending.activity_type.name == "pick_and_pack"
            and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for pending in description.raw_description.pending_activities
        )

    try:
        await eventually(status, lambda view: view.status is OrderStatus.FULFILLING, within=30)
        await eventually(pick_pack_started, bool, within=10)

        first.kill()  # SIGKILL: no graceful shutdown, the activity just stops heartbeating
        assert first.wait(timeout=10) == -9
        start_worker(RESTARTED_FULFILLMENT_DELAY)

        shipped = await eventually(
            status, lambda view: view.status is OrderStatus.SHIPPED, within=60
        )
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n{worker_logs(tmp_path)}") from failed

    # Pick/pack really was interrupted and redone by the new worker.
    history = await handle.fetch_history()
    started = [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert max(started) >= 2, started

    assert shipped.payment.authorized == shipped.payment.captured == 1899 + 499
    engine = make_engine(f"sqlite:///{data_dir / 'ordermill.db'}")
    try:
        with Session(engine) as session:
            rows = session.exec(
                select(PaymentTransaction).where(PaymentTransaction.order_id == order_id)
            ).all()
            kinds = sorted((row.kind, row.status, row.amount) for row in rows)
    finally:
        engine.dispose()
    assert kinds == [("authorize", "approved", 2398), ("capture", "approved", 2398)]

    async def outbox() -> list[str]:  # the shipped email follows the status by a moment
        return sorted(path.name for path in (data_dir / "outbox").glob(f"{order_id}_*.eml"))

    expected = [f"{order_id}_confirmation.eml", f"{order_id}_shipped_SHP-1.eml"]
    assert await eventually(outbox, lambda names: len(names) >= 2) == expected

    if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
        await handle.terminate("crash test finished")
