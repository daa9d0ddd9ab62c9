"""Record the order histories that tests/test_replay.py replays on every run.

    .venv/bin/python -m tests.record_histories [path ...]

Starts a throwaway dev server and the real activities on a temporary SQLite database, runs
one order down each path below to its end, and writes its history to
tests/histories/<path>.json. Commit those files.

The rule for re-recording:
- Until ordermill's first release (the README's "Releases" section says when it happens), the
  workflow's shape may change freely: no order has ever run on an older one. Re-record every
  path after such a change and delete the histories of paths that no longer exist.
- After the first release, orders of every released shape may still be running. A change that
  alters the commands an order issues goes behind `workflow.patched(...)`, the old histories
  stay and keep replaying, and the new shape is recorded beside them
  (`<path>.<patch>.json`). A replay failure then means running orders would break: never
  re-record to make it pass.
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
from models.activities import ReceiveStockInput
from models.holds import HoldDecision, HoldResolution
from models.orders import (
    CancelRequest,
    FeedbackRequest,
    FeedbackView,
    GoodwillRefundRequest,
    InquiryRequest,
    InquiryView,
    OrderItem,
    OrderStatus,
    OrderTimeouts,
    OrderView,
    PaymentMethod,
    PlaceOrderInput,
    RefundView,
    ReturnLine,
    ReturnReason,
    ReturnRequest,
    ReturnResolution,
    ReturnStatus,
    ReturnView,
)
from models.shipments import CarrierEvent, CarrierStatus
from models.wire import (
    QUERY_STATUS,
    SEARCH_ATTRIBUTES,
    SIGNAL_CARRIER_EVENT,
    TASK_QUEUE,
    UPDATE_ASK,
    UPDATE_FEEDBACK,
    UPDATE_REFUND,
    UPDATE_REQUEST_RETURN,
    UPDATE_RESOLVE_HOLD,
    stock_receipt_workflow_id,
)
from models.wire import UPDATE_CANCEL as CANCEL
from settings import Settings
from temporal_client import start_order
from tests.conftest import eventually, venv_binary
from worker import build_activities
from workflows.order import OrderWorkflow
from workflows.stock_receipt import StockReceiptWorkflow

HISTORIES = Path(__file__).parent / "histories"
Handle = WorkflowHandle[OrderWorkflow, OrderView]


# Long enough to request returns after delivery; the order then completes that much later.
RETURN_WINDOWS = {
    "return_refund": timedelta(seconds=5),
    "exchange": timedelta(seconds=5),
    "split": timedelta(seconds=5),
}
CUSTOMERS = {"rejected": "cus_blocked", "reviewed": "cus_newbie"}
# The demo's stock: BOOK-NEUROMANCER is in WH-EAST only, BOOK-EARTHSEA in WH-WEST only.
SPLIT_ITEMS = [
    OrderItem(sku="BOOK-NEUROMANCER", quantity=1),
    OrderItem(sku="BOOK-EARTHSEA", quantity=2),
]
ITEMS = {"split": SPLIT_ITEMS, "backordered": [OrderItem(sku="BOOK-PREORDER", quantity=2)]}


def _order(name: str, token: str = "tok_visa") -> PlaceOrderInput:
    return PlaceOrderInput(
        order_id=f"replay-{name}",
        customer_id=CUSTOMERS.get(name, "cus_ada"),
        items=ITEMS.get(
            name,
            [OrderItem(sku="BOOK-DUNE", quantity=1), OrderItem(sku="EBOOK-DUNE", quantity=1)],
        ),
        payment=PaymentMethod(token=token),
        placed_at=datetime.now(UTC),
        timeouts=OrderTimeouts(return_window=RETURN_WINDOWS.get(name, timedelta(seconds=2))),
    )


async def _status(handle: Handle) -> OrderView:
    return await handle.query(QUERY_STATUS, result_type=OrderView)


async def _until(handle: Handle, status: OrderStatus) -> OrderView:
    return await eventually(lambda: _status(handle), lambda view: view.status is status)


async def _carrier(
    handle: Handle, view: OrderView, status: CarrierStatus, event_id: str, parcel: int = 0
) -> None:
    tracking = view.shipments[parcel].tracking_number
    assert tracking is not None
    await _track(handle, tracking, status, event_id)


async def _track(handle: Handle, tracking: str, status: CarrierStatus, event_id: str) -> None:
    event = CarrierEvent(
        event_id=event_id, tracking_number=tracking, status=status, occurred_at=datetime.now(UTC)
    )
    await handle.signal(SIGNAL_CARRIER_EVENT, event)


async def _delivered(handle: Handle) -> None:
    shipped = await _until(handle, OrderStatus.SHIPPED)
    await _carrier(handle, shipped, CarrierStatus.DELIVERED, "evt-delivered")
    await _until(handle, OrderStatus.DELIVERED)


async def _return(handle: Handle, sku: str, resolution: ReturnResolution) -> ReturnView:
    request = ReturnRequest(
        lines=[ReturnLine(sku=sku, quantity=1)],
        reason=ReturnReason.DAMAGED,
        resolution=resolution,
    )
    return await handle.execute_update(UPDATE_REQUEST_RETURN, request, result_type=ReturnView)


async def happy(client: Client, handle: Handle) -> None:
    """Mixed order: download email, ship, carrier events (one duplicate), delivered, completed."""
    shipped = await _until(handle, OrderStatus.SHIPPED)
    await _carrier(handle, shipped, CarrierStatus.IN_TRANSIT, "evt-1")
    await _carrier(handle, shipped, CarrierStatus.IN_TRANSIT, "evt-1")
    await _carrier(handle, shipped, CarrierStatus.DELIVERED, "evt-2")


async def declined(client: Client, handle: Handle) -> None:
    """tok_chargeDeclined: stock released, customer told."""


async def rejected(client: Client, handle: Handle) -> None:
    """A blocked customer: the first step fails with a business error, nothing is held."""


async def cancelled(client: Client, handle: Handle) -> None:
    """Cancelled by the Update while the warehouse picks: pick/pack cancelled, void, release."""
    await _until(handle, OrderStatus.FULFILLING)
    await handle.execute_update(CANCEL, CancelRequest(reason="recorded"), result_type=OrderView)


async def returned(client: Client, handle: Handle) -> None:
    """Shipped, then returned to sender: refunded, delivery failed."""
    shipped = await _until(handle, OrderStatus.SHIPPED)
    await _carrier(handle, shipped, CarrierStatus.RETURN_TO_SENDER, "evt-1")


async def return_refund(client: Client, handle: Handle) -> None:
    """Customer service on a delivered order: an inquiry, feedback, a goodwill refund, the
    e-book refunded (download revoked), the paperback returned by parcel and refunded."""
    await _delivered(handle)
    await handle.execute_update(
        UPDATE_ASK, InquiryRequest(message="Is the e-book DRM-free?"), result_type=InquiryView
    )
    await handle.execute_update(
        UPDATE_FEEDBACK, FeedbackRequest(rating=4), result_type=FeedbackView
    )
    await handle.execute_update(
        UPDATE_REFUND, GoodwillRefundRequest(amount=100, reason="late"), result_type=RefundView
    )
    await _return(handle, "EBOOK-DUNE", ReturnResolution.REFUND)
    parcel = await _return(handle, "BOOK-DUNE", ReturnResolution.REFUND)
    assert parcel.tracking_number is not None
    await _track(handle, parcel.tracking_number, CarrierStatus.IN_TRANSIT, "evt-ret-1")
    await _track(handle, parcel.tracking_number, CarrierStatus.DELIVERED, "evt-ret-2")
    await _until(handle, OrderStatus.RETURNED)


async def exchange(client: Client, handle: Handle) -> None:
    """The paperback sent back for an exchange: restocked, shipped again, delivered."""
    await _delivered(handle)
    parcel = await _return(handle, "BOOK-DUNE", ReturnResolution.EXCHANGE)
    assert parcel.tracking_number is not None
    await _track(handle, parcel.tracking_number, CarrierStatus.DELIVERED, "evt-ret")

    def shipped_again(view: OrderView) -> bool:
        return view.returns[0].status is ReturnStatus.EXCHANGE_SHIPPED

    view = await eventually(lambda: _status(handle), shipped_again)
    replacement = view.returns[0].exchange_shipment
    assert replacement is not None and replacement.tracking_number is not None
    await _track(handle, replacement.tracking_number, CarrierStatus.DELIVERED, "evt-exchange")


async def split(client: Client, handle: Handle) -> None:
    """Two parcels from two warehouses: one delivered, the other returned to sender
    (refunded, restocked); then a return from the delivered one."""
    shipped = await _until(handle, OrderStatus.SHIPPED)
    await _carrier(handle, shipped, CarrierStatus.IN_TRANSIT, "evt-1", parcel=0)
    await _carrier(handle, shipped, CarrierStatus.DELIVERED, "evt-2", parcel=0)
    await _carrier(handle, shipped, CarrierStatus.RETURN_TO_SENDER, "evt-3", parcel=1)
    await _until(handle, OrderStatus.PARTIALLY_DELIVERED)
    parcel = await _return(handle, "BOOK-NEUROMANCER", ReturnResolution.REFUND)
    assert parcel.tracking_number is not None
    await _track(handle, parcel.tracking_number, CarrierStatus.DELIVERED, "evt-ret")
    await _until(handle, OrderStatus.RETURNED)


async def held(client: Client, handle: Handle) -> None:
    """tok_captureDeclined: the capture waits in a hold; released, it is declined again; the
    second hold rejected, the amount is written off. An unreadable carrier event is noted."""

    def hold_open(hold_id: str) -> Callable[[OrderView], bool]:
        return lambda view: any(h.hold_id == hold_id and h.resolution is None for h in view.holds)

    await eventually(lambda: _status(handle), hold_open("capture_declined"))
    await _decide(handle, "capture_declined", HoldResolution.RELEASED, None)
    await eventually(lambda: _status(handle), hold_open("capture_declined-2"))
    await _decide(handle, "capture_declined-2", HoldResolution.REJECTED, "written off")
    shipped = await _until(handle, OrderStatus.SHIPPED)
    tracking = shipped.shipments[0].tracking_number
    naive = {"event_id": "evt-naive", "tracking_number": tracking, "status": "in_transit"}
    await handle.signal(SIGNAL_CARRIER_EVENT, naive | {"occurred_at": "2026-11-26T10:00:00"})
    await _carrier(handle, shipped, CarrierStatus.DELIVERED, "evt-delivered")


async def reviewed(client: Client, handle: Handle) -> None:
    """A customer whose orders are reviewed: held before pick/pack, released by an operator,
    then shipped and delivered."""
    await eventually(
        lambda: _status(handle),
        lambda view: any(h.hold_id == "risk_review" and h.resolution is None for h in view.holds),
    )
    await _decide(handle, "risk_review", HoldResolution.RELEASED, None)
    await _delivered(handle)


async def backordered(client: Client, handle: Handle) -> None:
    """Two of a book not yet in stock: authorized and confirmed, it waits; a stock receipt
    fills it, and it ships and is delivered."""
    await _until(handle, OrderStatus.BACKORDERED)
    receipt = ReceiveStockInput(
        receipt_id="replay-backordered", sku="BOOK-PREORDER", warehouse="WH-EAST", add=2
    )
    await client.execute_workflow(
        StockReceiptWorkflow.run,
        receipt,
        id=stock_receipt_workflow_id(receipt.receipt_id),
        task_queue=TASK_QUEUE,
    )
    await _delivered(handle)


async def _decide(
    handle: Handle, hold_id: str, resolution: HoldResolution, reason: str | None
) -> None:
    decision = HoldDecision(hold_id=hold_id, resolution=resolution, reason=reason)
    await handle.execute_update(UPDATE_RESOLVE_HOLD, decision, result_type=OrderView)


PATHS: dict[str, tuple[str, Callable[[Client, Handle], Awaitable[None]], OrderStatus]] = {
    "happy": ("tok_visa", happy, OrderStatus.COMPLETED),
    "declined": ("tok_chargeDeclined", declined, OrderStatus.PAYMENT_DECLINED),
    "rejected": ("tok_visa", rejected, OrderStatus.REJECTED),
    "cancelled": ("tok_visa", cancelled, OrderStatus.CANCELLED),
    "return_to_sender": ("tok_visa", returned, OrderStatus.DELIVERY_FAILED),
    "return_refund": ("tok_visa", return_refund, OrderStatus.COMPLETED),
    "exchange": ("tok_visa", exchange, OrderStatus.COMPLETED),
    "split": ("tok_visa", split, OrderStatus.COMPLETED),
    "held": ("tok_captureDeclined", held, OrderStatus.COMPLETED),
    "reviewed": ("tok_visa", reviewed, OrderStatus.COMPLETED),
    "backordered": ("tok_visa", backordered, OrderStatus.COMPLETED),
}


async def record(client: Client, name: str) -> Path:
    token, drive, expected = PATHS[name]
    handle = await start_order(client, _order(name, token))
    await drive(client, handle)
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
                    workflows=[OrderWorkflow, StockReceiptWorkflow],
                    activities=build_activities(settings, engine, env.client),
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
