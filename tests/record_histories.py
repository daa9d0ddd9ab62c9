"""Record the order histories that tests/test_replay.py replays on every run.

    .venv/bin/python -m tests.record_histories

Starts a throwaway dev server and the real activities on a temporary SQLite database, runs
one order down each path below to its end, and writes its history to tests/histories/<path>.json.
Commit those files.

Re-record deliberately, never to make a failing replay pass: a replay failure means orders
already running in production would fail on the new workflow code. Change the workflow
compatibly instead (`workflow.patched(...)`), then record the new shape *in addition* (a new
file name), keeping the old histories for as long as such orders may still be running.
"""

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from database import init_database
from models.orders import (
    CancelRequest,
    CarrierEvent,
    CarrierStatus,
    OrderItem,
    OrderStatus,
    OrderTimeouts,
    OrderView,
    PaymentMethod,
    PlaceOrderInput,
)
from models.wire import QUERY_STATUS, SEARCH_ATTRIBUTES, SIGNAL_CARRIER_EVENT, TASK_QUEUE
from models.wire import UPDATE_CANCEL as CANCEL
from settings import Settings
from temporal_client import start_order
from tests.conftest import eventually, venv_binary
from worker import build_activities
from workflows.order import OrderWorkflow

HISTORIES = Path(__file__).parent / "histories"
Handle = WorkflowHandle[OrderWorkflow, OrderView]


def _order(name: str, token: str = "tok_visa") -> PlaceOrderInput:
    return PlaceOrderInput(
        order_id=f"replay-{name}",
        customer_id="cus_ada",
        items=[OrderItem(sku="BOOK-DUNE", quantity=1), OrderItem(sku="EBOOK-DUNE", quantity=1)],
        payment=PaymentMethod(token=token),
        placed_at=datetime.now(UTC),
        timeouts=OrderTimeouts(return_window=timedelta(seconds=2)),
    )


async def _status(handle: Handle) -> OrderView:
    return await handle.query(QUERY_STATUS, result_type=OrderView)


async def _until(handle: Handle, status: OrderStatus) -> OrderView:
    return await eventually(lambda: _status(handle), lambda view: view.status is status)


async def _carrier(handle: Handle, view: OrderView, status: CarrierStatus, event_id: str) -> None:
    assert view.shipment is not None
    event = CarrierEvent(
        event_id=event_id,
        tracking_number=view.shipment.tracking_number,
        status=status,
        occurred_at=datetime.now(UTC),
    )
    await handle.signal(SIGNAL_CARRIER_EVENT, event)


async def happy(handle: Handle) -> None:
    """Mixed order: download email, ship, carrier events (one duplicate), delivered, completed."""
    shipped = await _until(handle, OrderStatus.SHIPPED)
    await _carrier(handle, shipped, CarrierStatus.IN_TRANSIT, "evt-1")
    await _carrier(handle, shipped, CarrierStatus.IN_TRANSIT, "evt-1")
    await _carrier(handle, shipped, CarrierStatus.DELIVERED, "evt-2")


async def declined(handle: Handle) -> None:
    """tok_chargeDeclined: stock released, customer told."""


async def cancelled(handle: Handle) -> None:
    """Cancelled by the Update while the warehouse picks: pick/pack cancelled, void, release."""
    await _until(handle, OrderStatus.FULFILLING)
    await handle.execute_update(CANCEL, CancelRequest(reason="recorded"), result_type=OrderView)


async def returned(handle: Handle) -> None:
    """Shipped, then returned to sender: refunded, delivery failed."""
    shipped = await _until(handle, OrderStatus.SHIPPED)
    await _carrier(handle, shipped, CarrierStatus.RETURN_TO_SENDER, "evt-1")


PATHS: dict[str, tuple[str, Callable[[Handle], Awaitable[None]], OrderStatus]] = {
    "happy": ("tok_visa", happy, OrderStatus.COMPLETED),
    "declined": ("tok_chargeDeclined", declined, OrderStatus.PAYMENT_DECLINED),
    "cancelled": ("tok_visa", cancelled, OrderStatus.CANCELLED),
    "return_to_sender": ("tok_visa", returned, OrderStatus.DELIVERY_FAILED),
}


async def record(client: Client, name: str) -> Path:
    token, drive, expected = PATHS[name]
    handle = await start_order(client, _order(name, token))
    await drive(handle)
    result = await handle.result()
    if result.status is not expected:
        raise RuntimeError(f"{name}: ended {result.status}, expected {expected}")
    history = await handle.fetch_history()
    path = HISTORIES / f"{name}.json"
    path.write_text(history.to_json() + "\n")
    return path


async def main(names: list[str]) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            # Pick/pack lasts long enough to cancel it, and heartbeats reach the server at once.
            # Explicit None: a DATABASE_URL or SMTP_HOST in the environment must not be used.
            settings = Settings(
                data_dir=Path(data_dir),
                database_url=None,
                smtp_host=None,
                fulfillment_delay=timedelta(seconds=4),
            )
            engine = init_database(settings.effective_database_url)
            with ThreadPoolExecutor(max_workers=8) as executor:
                async with Worker(
                    env.client,
                    task_queue=TASK_QUEUE,
                    workflows=[OrderWorkflow],
                    activities=build_activities(settings, engine),
                    activity_executor=executor,
                    max_heartbeat_throttle_interval=timedelta(milliseconds=200),
                ):
                    paths = await asyncio.gather(*(record(env.client, n) for n in names))
            engine.dispose()
    finally:
        await env.shutdown()
    for path in paths:
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    HISTORIES.mkdir(exist_ok=True)
    asyncio.run(main(sys.argv[1:] or list(PATHS)))
