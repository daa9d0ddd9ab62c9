"""Holds: every failure ordermill cannot decide alone waits for an operator, never fails the
workflow. On the time-skipping server with fakes that fail on demand."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from models.activities import EmailKind
from models.holds import HoldCode, HoldResolution
from models.orders import InquiryRequest, InquiryView, OrderStatus, OrderView, ReturnStatus
from models.shipments import CarrierStatus
from models.wire import ORDER_HOLDS, UPDATE_ASK
from tests.conftest import eventually
from tests.workflows.conftest import OrderUnderTest
from tests.workflows.test_returns import (
    delivered,
    parcel_back,
    request_return,
    return_request,
    the_return,
)

DUNE, STANDARD_SHIPPING = 1899, 499
TOTAL = DUNE + STANDARD_SHIPPING


async def open_holds(order: OrderUnderTest) -> list[str]:
    described = await order.describe()
    return list(described.typed_search_attributes.get(ORDER_HOLDS) or [])


async def no_task_failed(order: OrderUnderTest) -> None:
    history = await order.history()
    failed = EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    assert not [e for e in history.events if e.event_type == failed]


async def test_a_declined_capture_holds_the_order_and_a_release_captures_again(
    order: OrderUnderTest,
) -> None:
    order.fakes.capture_declines = 1
    await order.start()
    held = await order.hold("capture_declined")

    (hold,) = held.holds
    assert (hold.code, hold.resolution) == (HoldCode.CAPTURE_DECLINED, None)
    assert "Capture $23.98 for SHP-1" in hold.detail
    # The parcel is already the carrier's: the order keeps its status, only the capture waits.
    assert held.status is OrderStatus.FULFILLING
    assert await open_holds(order) == ["capture_declined"]
    support = order.fakes.sent()[-1]
    assert (support.kind, support.to, support.reference) == (
        EmailKind.HOLD_PLACED,
        None,
        "capture_declined",
    )

    decided = await order.resolve("capture_declined", HoldResolution.RELEASED)
    assert decided.resolution is HoldResolution.RELEASED and decided.resolved_at is not None
    shipped = await order.wait_for(OrderStatus.SHIPPED)

    first, second = order.fakes.called("capture_payment")
    assert first.idempotency_key != second.idempotency_key  # a declined key stays declined
    assert shipped.payment.captured == TOTAL
    assert await open_holds(order) == []
    await no_task_failed(order)


async def test_a_rejected_capture_is_written_off_and_the_order_goes_on(
    order: OrderUnderTest,
) -> None:
    order.fakes.capture_declines = 1
    await order.start()
    await order.hold("capture_declined")
    await order.resolve("capture_declined", HoldResolution.REJECTED, "card closed, goods gone")

    shipped = await order.wait_for(OrderStatus.SHIPPED)
    assert (shipped.payment.captured, shipped.payment.written_off) == (0, TOTAL)
    assert shipped.holds[0].reason == "card closed, goods gone"
    assert len(order.fakes.called("capture_payment")) == 1


async def test_a_refused_refund_is_held_and_a_rejected_one_is_settled_outside(
    order: OrderUnderTest,
) -> None:
    order.fakes.refund_refusals = 1
    await order.start()
    await order.wait_for(OrderStatus.SHIPPED)
    await order.carrier(CarrierStatus.RETURN_TO_SENDER, "evt-back")
    held = await order.hold("refund_refused")
    assert held.status is OrderStatus.SHIPPED

    await order.resolve("refund_refused", HoldResolution.REJECTED, "refunded by bank transfer")
    final = await order.result()

    assert final.status is OrderStatus.DELIVERY_FAILED
    (refund,) = final.refunds
    assert refund.settled_outside and refund.amount == TOTAL
    assert final.payment.refunded == final.payment.captured
    await no_task_failed(order)


async def test_a_refund_refused_in_a_return_is_held_and_a_release_refunds_it(
    order: OrderUnderTest,
) -> None:
    """The return runs beside the order's main line: its failure must still reach a hold."""
    order.fakes.refund_refusals = 1
    await delivered(order, {"BOOK-DUNE": 1})
    ret = await request_return(order, return_request(BOOK_DUNE=1))
    await parcel_back(order, ret, "evt-ret")
    held = await order.hold("refund_refused")
    assert the_return(held, "RET-1").status is not ReturnStatus.REFUNDED

    await order.resolve("refund_refused", HoldResolution.RELEASED)
    returned = await order.wait_for(OrderStatus.RETURNED)

    assert the_return(returned, "RET-1").status is ReturnStatus.REFUNDED
    assert returned.payment.refunded == DUNE
    assert (await order.result()).status is OrderStatus.COMPLETED
    await no_task_failed(order)


async def test_an_outage_past_its_bound_stops_the_order_on_hold_until_released(
    order: OrderUnderTest,
) -> None:
    order.fakes.down.add("authorize_payment")
    await order.start()
    held = await order.hold("retries_exhausted", skip=timedelta(minutes=5))

    assert held.status is OrderStatus.ON_HOLD  # nothing has left: the order stops
    attempts = order.fakes.called("authorize_payment")
    assert len(attempts) == 15  # the payment policy's bound
    assert len({a.idempotency_key for a in attempts}) == 1

    order.fakes.down.clear()
    await order.resolve("retries_exhausted", HoldResolution.RELEASED, "processor is back")
    shipped = await order.wait_for(OrderStatus.SHIPPED)
    # Tried again under the same key: an attempt that timed out may have reached the processor.
    assert {a.idempotency_key for a in order.fakes.called("authorize_payment")} == {
        attempts[0].idempotency_key
    }
    statuses = [e.status for e in shipped.timeline]
    assert OrderStatus.ON_HOLD in statuses
    assert statuses.index(OrderStatus.ON_HOLD) < statuses.index(OrderStatus.FULFILLING)


async def test_a_rejected_hold_before_anything_left_cancels_the_order(
    order: OrderUnderTest,
) -> None:
    order.fakes.down.add("pick_and_pack")
    await order.start()
    await order.hold("retries_exhausted", skip=timedelta(minutes=10))
    await order.resolve("retries_exhausted", HoldResolution.REJECTED, "warehouse flooded")

    final = await order.result()
    assert final.status is OrderStatus.CANCELLED
    assert final.reason is not None and "warehouse flooded" in final.reason.detail
    assert len(order.fakes.called("void_payment")) == 1
    assert len(order.fakes.called("release_stock")) == 1
    assert order.fakes.emails()[-1] is EmailKind.CANCELLED


async def test_a_cancel_while_on_hold_rejects_the_hold(order: OrderUnderTest) -> None:
    order.fakes.down.add("authorize_payment")
    await order.start()
    await order.hold("retries_exhausted", skip=timedelta(minutes=5))

    cancelled = await order.cancel("not waiting any longer")

    assert cancelled.status is OrderStatus.CANCELLED
    (hold,) = cancelled.holds
    assert hold.resolution is HoldResolution.REJECTED
    assert await open_holds(order) == []


async def test_data_the_database_refuses_is_held_and_recorded_scrubbed_once_released(
    order: OrderUnderTest,
) -> None:
    await order.start()
    await order.wait_for(OrderStatus.SHIPPED)

    order.fakes.refuse_records = 1
    asked = asyncio.create_task(
        order.update(UPDATE_ASK, InquiryRequest(message="gift wrap?"), InquiryView)
    )
    held = await order.hold("data_rejected")
    assert held.status is OrderStatus.SHIPPED
    await order.resolve("data_rejected", HoldResolution.RELEASED)
    inquiry = await asked

    assert inquiry.inquiry_id == "Q-1"
    records = order.fakes.called("record_order")
    refused = next(i for i, r in enumerate(records) if r.order.inquiries)
    assert records[refused].scrub is False
    # The same change, tried again with the offending text replaced, as a newer version than
    # the hold's own records.
    again = next(r for r in records[refused + 1 :] if r.scrub)
    assert again.order.inquiries and again.version > records[refused].version
    assert await open_holds(order) == []
    await no_task_failed(order)


async def test_hold_decisions_are_checked(order: OrderUnderTest) -> None:
    order.fakes.capture_declines = 1
    await order.start()
    await order.hold("capture_declined")

    async def refused(hold_id: str, resolution: HoldResolution, reason: str | None) -> str:
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await order.resolve(hold_id, resolution, reason)
        assert isinstance(failed.value.cause, ApplicationError)
        return str(failed.value.cause.type)

    assert await refused("nope", HoldResolution.RELEASED, None) == "HoldNotFound"
    assert await refused("capture_declined", HoldResolution.REJECTED, " ") == "HoldRefused"
    await order.resolve("capture_declined", HoldResolution.RELEASED)
    assert await refused("capture_declined", HoldResolution.RELEASED, None) == "HoldResolved"
    await order.wait_for(OrderStatus.SHIPPED)


async def test_questions_are_capped_per_order(order: OrderUnderTest) -> None:
    await order.start()
    await order.wait_for(OrderStatus.SHIPPED)
    for n in range(20):
        await order.update(UPDATE_ASK, InquiryRequest(message=f"question {n}"), InquiryView)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await order.update(UPDATE_ASK, InquiryRequest(message="one more"), InquiryView)
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == "InquiryRefused"
    assert len((await order.view()).inquiries) == 20
    # The support mailbox gets each question once, not the earlier ones again.
    assert len(order.fakes.called("notify_support")) == 20


async def test_a_malformed_carrier_event_changes_nothing_and_later_ones_still_apply(
    order: OrderUnderTest,
) -> None:
    """A naive time cannot be ordered beside aware ones: it is dropped, never a failed task."""
    await order.start()
    shipped = await order.wait_for(OrderStatus.SHIPPED)
    tracking = shipped.shipments[0].tracking_number
    await order.signal(
        "carrier_event",
        {
            "event_id": "evt-naive",
            "tracking_number": tracking,
            "status": "in_transit",
            "occurred_at": "2026-11-26T10:00:00",
        },
    )
    await order.carrier(CarrierStatus.DELIVERED, "evt-ok", occurred_at=datetime.now(UTC))
    delivered: OrderView = await order.wait_for(OrderStatus.DELIVERED)

    assert [e.event_id for e in delivered.shipments[0].events] == ["evt-ok"]
    (unreadable,) = [e for e in delivered.timeline if e.event == "carrier_event_unreadable"]
    assert "occurred_at" in unreadable.detail and "2026-11-26" not in unreadable.detail
    await no_task_failed(order)
    assert await eventually(order.view, lambda v: v.status is OrderStatus.DELIVERED)
