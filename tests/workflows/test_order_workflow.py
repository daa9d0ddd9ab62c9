"""OrderWorkflow, one test per path, on the time-skipping server with fake outside systems.

The fakes record every call, so each test checks what the order did to the outside world
(charged once, voided what it authorized, released what it held, told the customer) as well
as where it ended up. Days-long waits (delivery deadline, return window) are skipped.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError

from models.activities import EmailKind, RecordOrderInput
from models.orders import CancelRequest, OrderStatus, OrderView, TimelineEntry
from models.shipments import CarrierStatus
from models.wire import CUSTOMER_ID, ORDER_STATUS, UPDATE_CANCEL
from tests.conftest import eventually
from tests.fakes import ADA, DECLINED_TOKEN, FLAKY_TOKEN
from tests.workflows.conftest import OrderUnderTest

DUNE, EBOOK, SOLDOUT = 1899, 999, 4999
STANDARD_SHIPPING = 499


def entry(view: OrderView, event: str) -> TimelineEntry:
    matches = [e for e in view.timeline if e.event == event]
    assert len(matches) == 1, f"expected one {event!r} in {[e.event for e in view.timeline]}"
    return matches[0]


async def search_attributes(order: OrderUnderTest) -> tuple[str | None, str | None]:
    described = await order.handle.describe()
    attrs = described.typed_search_attributes
    return attrs.get(ORDER_STATUS), attrs.get(CUSTOMER_ID)


def assert_one_authorization_captured(order: OrderUnderTest, total: int) -> None:
    (authorize,) = order.fakes.called("authorize_payment")
    (capture,) = order.fakes.called("capture_payment")
    assert authorize.amount == total
    assert capture.authorization_id == f"auth-{authorize.idempotency_key}"
    assert capture.amount == total


# ---- orders that go the whole way ------------------------------------------------------------


async def test_happy_physical_order_ships_is_delivered_and_completes(
    order: OrderUnderTest,
) -> None:
    await order.start({"BOOK-DUNE": 2})
    shipped = await order.wait_for(OrderStatus.SHIPPED)
    total = 2 * DUNE + STANDARD_SHIPPING
    assert shipped.totals is not None and shipped.totals.total == total
    assert [s.tracking_number for s in shipped.shipments] == [f"TRK-{order.order_id}-SHP-1"]
    assert await search_attributes(order) == ("shipped", "cus_ada")

    await order.carrier(CarrierStatus.IN_TRANSIT, "evt-1")
    await order.carrier(CarrierStatus.DELIVERED, "evt-2")
    delivered = await order.wait_for(OrderStatus.DELIVERED)
    assert [s.status for s in delivered.shipments] == [CarrierStatus.DELIVERED]
    final = await order.result()

    assert final.status is OrderStatus.COMPLETED
    assert order.fakes.names() == [
        "verify_customer",
        "reserve_stock",
        "authorize_payment",
        "pick_and_pack",
        "book_shipment",
        "commit_stock",
        "capture_payment",
    ]
    assert order.fakes.emails() == [EmailKind.CONFIRMATION, EmailKind.SHIPPED, EmailKind.DELIVERED]
    assert {email.to for email in order.fakes.sent()} == {ADA.email}
    assert_one_authorization_captured(order, total)
    assert final.payment.authorized == final.payment.captured == total
    assert final.payment.refunded == 0
    (pick,) = order.fakes.called("pick_and_pack")
    assert [(line.sku, line.quantity) for line in pick.lines] == [("BOOK-DUNE", 2)]
    assert order.fakes.called("release_stock") == []
    assert await search_attributes(order) == ("completed", "cus_ada")

    # The read model saw every change, numbered so a late snapshot never wins.
    records: list[RecordOrderInput] = order.fakes.called("record_order")
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    assert records[-1].order.status is OrderStatus.COMPLETED
    statuses = [r.order.status for r in records]
    for status in ("confirmed", "fulfilling", "shipped", "delivered"):
        assert OrderStatus(status) in statuses


async def test_digital_only_order_is_delivered_by_email_and_captured_without_shipping(
    order: OrderUnderTest,
) -> None:
    await order.start({"EBOOK-DUNE": 1})
    final = await order.result()

    assert final.status is OrderStatus.COMPLETED
    assert final.totals is not None
    assert (final.totals.shipping, final.totals.total) == (0, EBOOK)
    assert final.shipments == []
    for name in ("pick_and_pack", "book_shipment", "commit_stock"):
        assert order.fakes.called(name) == [], name
    assert order.fakes.emails() == [
        EmailKind.CONFIRMATION,
        EmailKind.DIGITAL_DELIVERY,
        EmailKind.DELIVERED,
    ]
    assert_one_authorization_captured(order, EBOOK)
    assert final.delivered_at is not None


async def test_mixed_order_emails_downloads_and_ships_only_the_physical_lines(
    order: OrderUnderTest,
) -> None:
    await order.start({"BOOK-DUNE": 1, "EBOOK-DUNE": 1})
    shipped = await order.wait_for(OrderStatus.SHIPPED)
    total = DUNE + EBOOK + STANDARD_SHIPPING
    assert shipped.totals is not None and shipped.totals.total == total

    (pick,) = order.fakes.called("pick_and_pack")
    assert [line.sku for line in pick.lines] == ["BOOK-DUNE"]
    assert order.fakes.emails() == [
        EmailKind.CONFIRMATION,
        EmailKind.DIGITAL_DELIVERY,
        EmailKind.SHIPPED,
    ]
    await order.carrier(CarrierStatus.DELIVERED, "evt-1")
    final = await order.result()
    assert final.status is OrderStatus.COMPLETED
    assert order.fakes.emails()[-1] is EmailKind.DELIVERED
    assert_one_authorization_captured(order, total)


# ---- orders that stop before any money moves -----------------------------------------------


async def test_blocked_customer_is_rejected_before_anything_is_held(
    order: OrderUnderTest,
) -> None:
    await order.start(customer_id="cus_blocked")
    final = await order.result()

    assert final.status is OrderStatus.REJECTED
    assert final.reason is not None and final.reason.code == "customer_blocked"
    assert order.fakes.names() == ["verify_customer"]
    assert await search_attributes(order) == ("rejected", "cus_blocked")


async def test_out_of_stock_is_rejected_naming_the_sku_and_the_customer_is_told(
    order: OrderUnderTest,
) -> None:
    await order.start({"BOOK-DUNE": 1, "BOOK-SOLDOUT": 1})
    final = await order.result()

    assert final.status is OrderStatus.REJECTED
    assert final.reason is not None
    assert final.reason.code == "out_of_stock"
    assert "BOOK-SOLDOUT" in final.reason.detail
    assert order.fakes.names() == ["verify_customer", "reserve_stock"]
    assert order.fakes.emails() == [EmailKind.REJECTED]


# ---- payment ----------------------------------------------------------------------------------


async def test_declined_card_releases_stock_and_emails_the_customer(
    order: OrderUnderTest,
) -> None:
    await order.start(token=DECLINED_TOKEN)
    final = await order.result()

    assert final.status is OrderStatus.PAYMENT_DECLINED
    assert final.reason is not None and final.reason.code == "card_declined"
    assert len(order.fakes.called("authorize_payment")) == 1  # a decline is never retried
    (release,) = order.fakes.called("release_stock")
    assert release.order_id == order.order_id
    assert order.fakes.emails() == [EmailKind.CONFIRMATION, EmailKind.PAYMENT_DECLINED]
    for name in ("pick_and_pack", "capture_payment", "void_payment", "commit_stock"):
        assert order.fakes.called(name) == [], name
    assert final.payment.authorized == 0


async def test_flaky_gateway_is_retried_with_the_same_key_until_it_approves(
    order: OrderUnderTest,
) -> None:
    await order.start(token=FLAKY_TOKEN)
    shipped = await order.wait_for(OrderStatus.SHIPPED, skip=timedelta(seconds=2))

    attempts = order.fakes.called("authorize_payment")
    assert len(attempts) == 3  # two transient failures, then approved
    assert len({attempt.idempotency_key for attempt in attempts}) == 1
    assert shipped.totals is not None
    assert shipped.payment.authorized == shipped.payment.captured == shipped.totals.total
    assert EmailKind.PAYMENT_DECLINED not in order.fakes.emails()
    assert len(order.fakes.called("capture_payment")) == 1


# ---- cancel -------------------------------------------------------------------------------------


async def test_cancel_during_fulfilment_stops_the_warehouse_voids_releases_and_emails(
    order: OrderUnderTest,
) -> None:
    order.fakes.hold_pick_pack = True
    await order.start()
    await order.wait_for(OrderStatus.FULFILLING)
    await order.called("pick_and_pack")  # the warehouse is working on it

    cancelled = await order.cancel("changed my mind")

    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.reason is not None
    assert (cancelled.reason.code, cancelled.reason.detail) == ("cancelled", "changed my mind")
    assert cancelled.payment.voided
    assert order.fakes.pick_pack_cancelled, "pick/pack was not told to stop"
    (authorize,) = order.fakes.called("authorize_payment")
    (void,) = order.fakes.called("void_payment")
    assert void.authorize_key == authorize.idempotency_key
    assert len(order.fakes.called("release_stock")) == 1

    # The update answers as soon as the order is cancelled; the email follows.
    final = await order.result()
    assert final.status is OrderStatus.CANCELLED
    assert order.fakes.emails() == [EmailKind.CONFIRMATION, EmailKind.CANCELLED]
    for name in ("book_shipment", "commit_stock", "capture_payment"):
        assert order.fakes.called(name) == [], name
    assert await search_attributes(order) == ("cancelled", "cus_ada")


async def test_a_cancel_while_fulfilment_is_being_recorded_never_starts_the_warehouse(
    order: OrderUnderTest,
) -> None:
    """A record that outlasts the workflow task (a slow database) lets the cancel in before
    pick/pack has a handle to cancel: it must then never start."""
    order.fakes.pause_record_of = "fulfilment_started"
    await order.start(task_timeout=timedelta(seconds=1))
    await asyncio.wait_for(order.fakes.record_paused.wait(), 10)

    # Past 80% of the task timeout the worker hands the open task back and takes the next,
    # which carries the cancel: accepted while the record still runs.
    async with asyncio.timeout(20):
        cancelling = await order.handle.start_update(
            UPDATE_CANCEL,
            CancelRequest(reason="changed my mind"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            result_type=OrderView,
        )
        order.fakes.record_resumed.set()
        cancelled = await cancelling.result()

    assert cancelled.status is OrderStatus.CANCELLED
    assert order.fakes.called("pick_and_pack") == []
    assert cancelled.payment.voided and len(order.fakes.called("release_stock")) == 1


async def test_a_cancel_is_in_the_read_model_while_it_takes_effect(
    order: OrderUnderTest,
) -> None:
    order.fakes.hold_pick_pack = True
    await order.start()
    await order.called("pick_and_pack")

    await order.cancel("changed my mind")

    records = order.fakes.called("record_order")
    events = [r.order.timeline[-1].event for r in records]
    assert events.index("cancel_requested") < events.index("cancelled") == len(events) - 1
    # The void and the release are recorded with the cancelled status they lead to.
    last = [e.event for e in records[-1].order.timeline]
    assert last[-3:] == ["payment_voided", "stock_released", "cancelled"]


async def test_cancel_is_refused_once_shipped_with_a_reason(order: OrderUnderTest) -> None:
    await order.start()
    await order.wait_for(OrderStatus.SHIPPED)

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await order.cancel()
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "CancelRefused"
    assert "can no longer be cancelled" in cause.message
    assert cause.details == ("shipped",)

    view = await order.view()
    assert view.status is OrderStatus.SHIPPED
    assert view.payment.voided is False
    for name in ("void_payment", "release_stock"):
        assert order.fakes.called(name) == [], name
    # A refused update leaves no trace in the history (the validator ran before acceptance).
    history = await order.handle.fetch_history()
    accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    assert not [e for e in history.events if e.event_type == accepted]


# ---- delivery ---------------------------------------------------------------------------------


async def test_no_delivery_within_14_days_refunds_and_fails_the_delivery(
    order: OrderUnderTest,
) -> None:
    await order.start()
    shipped = await order.wait_for(OrderStatus.SHIPPED)
    assert shipped.totals is not None
    total = shipped.totals.total

    await order.env.sleep(timedelta(days=13, hours=23))  # skipped, not slept
    assert (await order.view()).status is OrderStatus.SHIPPED
    final = await order.result()

    assert final.status is OrderStatus.DELIVERY_FAILED
    assert final.reason is not None and final.reason.code == "delivery_timeout"
    waited = entry(final, "delivery_failed").at - entry(final, "shipped").at
    assert timedelta(days=14) <= waited < timedelta(days=14, hours=1)
    (refund,) = order.fakes.called("refund_payment")
    assert (refund.amount, refund.reason) == (total, "delivery_timeout")
    assert refund.authorization_id == final.payment.authorization_id
    assert final.payment.refunded == final.payment.captured == total
    assert order.fakes.emails() == [
        EmailKind.CONFIRMATION,
        EmailKind.SHIPPED,
        EmailKind.DELIVERY_FAILED,
    ]


async def test_return_to_sender_refunds_and_fails_the_delivery(order: OrderUnderTest) -> None:
    await order.start()
    await order.wait_for(OrderStatus.SHIPPED)
    await order.carrier(CarrierStatus.IN_TRANSIT, "evt-1")
    await order.carrier(CarrierStatus.RETURN_TO_SENDER, "evt-2")
    final = await order.result()

    assert final.status is OrderStatus.DELIVERY_FAILED
    assert final.reason is not None and final.reason.code == "return_to_sender"
    assert [s.status for s in final.shipments] == [CarrierStatus.RETURN_TO_SENDER]
    # The parcel came back to its warehouse: its units are on the shelf again.
    (restock,) = order.fakes.called("restock")
    assert [(p.warehouse, p.lines[0].sku) for p in restock.parcels] == [("WH-EAST", "BOOK-DUNE")]
    (refund,) = order.fakes.called("refund_payment")
    assert refund.amount == final.payment.captured > 0
    assert final.payment.refunded == final.payment.captured
    assert order.fakes.emails()[-1] is EmailKind.DELIVERY_FAILED
    assert EmailKind.DELIVERED not in order.fakes.emails()


async def test_a_failed_delivery_of_a_mixed_order_refunds_all_and_revokes_the_download(
    order: OrderUnderTest,
) -> None:
    """Everything is refunded, the e-book included, so its link must stop working."""
    await order.start({"BOOK-DUNE": 1, "EBOOK-DUNE": 1})
    await order.wait_for(OrderStatus.SHIPPED)
    await order.carrier(CarrierStatus.RETURN_TO_SENDER, "evt-back")
    final = await order.result()

    assert final.status is OrderStatus.DELIVERY_FAILED
    assert final.payment.refunded == final.payment.captured == DUNE + EBOOK + STANDARD_SHIPPING
    assert order.fakes.revoked == {(order.order_id, "EBOOK-DUNE")}
    (restock,) = order.fakes.called("restock")
    assert [(p.warehouse, p.lines[0].sku) for p in restock.parcels] == [("WH-EAST", "BOOK-DUNE")]


async def test_duplicate_and_out_of_order_carrier_events_change_nothing(
    order: OrderUnderTest,
) -> None:
    await order.start()
    await order.wait_for(OrderStatus.SHIPPED)
    t0 = datetime.now(UTC)
    await order.carrier(CarrierStatus.PRE_TRANSIT, "evt-1", occurred_at=t0)
    await order.carrier(CarrierStatus.IN_TRANSIT, "evt-2", occurred_at=t0 + timedelta(hours=2))
    # The same event again, even dressed up as something else, is ignored.
    await order.carrier(CarrierStatus.IN_TRANSIT, "evt-2", occurred_at=t0 + timedelta(hours=2))
    await order.carrier(CarrierStatus.FAILURE, "evt-2", occurred_at=t0 + timedelta(hours=3))
    await order.carrier(CarrierStatus.DELIVERED, "evt-3", occurred_at=t0 + timedelta(hours=5))
    await order.wait_for(OrderStatus.DELIVERED)
    # An older scan reported late, and the delivery reported twice.
    await order.carrier(CarrierStatus.IN_TRANSIT, "evt-4", occurred_at=t0 + timedelta(hours=4))
    await order.carrier(CarrierStatus.DELIVERED, "evt-3", occurred_at=t0 + timedelta(hours=5))

    async def event_ids() -> list[str]:
        view = await order.view()
        return [event.event_id for event in view.shipments[0].events]

    assert await eventually(event_ids, lambda ids: len(ids) >= 4) == [
        "evt-1",
        "evt-2",
        "evt-4",
        "evt-3",
    ]
    view = await order.view()
    assert view.status is OrderStatus.DELIVERED
    assert view.shipments[0].status is CarrierStatus.DELIVERED
    assert [e.event for e in view.timeline].count("delivered") == 1

    final = await order.result()
    assert final.status is OrderStatus.COMPLETED
    assert order.fakes.emails().count(EmailKind.DELIVERED) == 1
    assert order.fakes.called("refund_payment") == []


async def test_a_delivery_reported_while_the_payment_is_captured_is_kept(
    order: OrderUnderTest,
) -> None:
    """The carrier's `delivered` can beat the `shipped` status: it is not lost to the deadline."""
    order.fakes.capture_allowed.clear()
    await order.start()
    await order.called("capture_payment")  # the shipment is booked, the order not yet shipped
    await order.carrier(CarrierStatus.DELIVERED, "evt-early")
    order.fakes.capture_allowed.set()

    final = await order.result()

    assert final.status is OrderStatus.COMPLETED
    assert final.delivered_at is not None
    assert order.fakes.called("refund_payment") == []


async def test_every_change_is_recorded_in_the_read_model(order: OrderUnderTest) -> None:
    await order.start()
    await order.wait_for(OrderStatus.SHIPPED)
    await order.carrier(CarrierStatus.IN_TRANSIT, "evt-1")
    await order.carrier(CarrierStatus.DELIVERED, "evt-2")
    final = await order.result()

    records = order.fakes.called("record_order")
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    assert records[-1].order == final
    # Each record holds the whole timeline so far: no change waits for a later one.
    shipped_at = [r.order.status for r in records].index(OrderStatus.SHIPPED)
    assert records[shipped_at + 1].order.timeline[-1].event == "carrier_in_transit"
    delivered = next(r.order for r in records if r.order.status is OrderStatus.DELIVERED)
    assert [e.event for e in delivered.timeline[-2:]] == ["carrier_delivered", "delivered"]


async def test_return_window_closes_30_days_after_delivery(order: OrderUnderTest) -> None:
    await order.start()
    await order.wait_for(OrderStatus.SHIPPED)
    await order.carrier(CarrierStatus.DELIVERED, "evt-1")
    delivered = await order.wait_for(OrderStatus.DELIVERED)
    assert delivered.delivered_at is not None
    assert delivered.return_window_ends_at == delivered.delivered_at + timedelta(days=30)

    await order.env.sleep(timedelta(days=29, hours=23))  # skipped, not slept
    assert (await order.view()).status is OrderStatus.DELIVERED
    final = await order.result()

    assert final.status is OrderStatus.COMPLETED
    open_for = entry(final, "completed").at - delivered.delivered_at
    assert timedelta(days=30) <= open_for < timedelta(days=30, hours=1)
    assert order.fakes.called("refund_payment") == []
