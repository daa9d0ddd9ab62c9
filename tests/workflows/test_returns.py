"""Customer service after delivery, on the time-skipping server with fake outside systems.

Returns (refund, exchange, partial, never arriving, late, twice), goodwill refunds and their
bound, digital refunds, inquiries, feedback, and an order that stays open for a return in flight.
The fakes record every call, so the money tests read like a ledger: every refund names the
captured authorization and together they never exceed the capture.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from models.activities import EmailKind, RefundPaymentInput, ShipmentDirection
from models.orders import (
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
    RefundKind,
    RefundView,
    ReturnLine,
    ReturnReason,
    ReturnRequest,
    ReturnResolution,
    ReturnStatus,
    ReturnView,
)
from models.shipments import CarrierStatus
from models.wire import (
    UPDATE_ASK,
    UPDATE_FEEDBACK,
    UPDATE_REFUND,
    UPDATE_REQUEST_RETURN,
    order_workflow_id,
)
from tests.conftest import eventually
from tests.fakes import ADA
from tests.workflows.conftest import OrderUnderTest
from workflows.order import OrderWorkflow

DUNE, EBOOK = 1899, 999
STANDARD_SHIPPING = 499

R = TypeVar("R")


# ---- driving an order ------------------------------------------------------------------------


async def start_with(order: OrderUnderTest, items: dict[str, int], timeouts: OrderTimeouts) -> None:
    """Like `order.start`, with the order's own timeouts (the fixture's start uses defaults);
    the fixture terminates whatever `_handle` it finds left running."""
    placed = PlaceOrderInput(
        order_id=order.order_id,
        customer_id="cus_ada",
        items=[OrderItem(sku=sku, quantity=quantity) for sku, quantity in items.items()],
        payment=PaymentMethod(token="tok_visa"),
        placed_at=datetime.now(UTC),
        timeouts=timeouts,
    )
    order._handle = await order.env.client.start_workflow(
        OrderWorkflow.run, placed, id=order_workflow_id(order.order_id), task_queue=order.task_queue
    )


async def delivered(
    order: OrderUnderTest, items: dict[str, int], timeouts: OrderTimeouts | None = None
) -> OrderView:
    """Place the order and have the carrier deliver it (digital-only orders deliver themselves)."""
    if timeouts is None:
        await order.start(items)
    else:
        await start_with(order, items, timeouts)
    if any(not sku.startswith("EBOOK-") for sku in items):
        shipped = await order.wait_for(OrderStatus.SHIPPED)
        for shipment in shipped.shipments:
            await order.carrier(
                CarrierStatus.DELIVERED,
                f"evt-delivered-{shipment.shipment_id}",
                tracking_number=shipment.tracking_number,
            )
    return await order.wait_for(OrderStatus.DELIVERED)


async def update(order: OrderUnderTest, name: str, request: Any, result_type: type[R]) -> R:
    return await order.update(name, request, result_type)


async def refused(order: OrderUnderTest, name: str, request: Any) -> ApplicationError:
    """Send an Update that must be refused; the refusal's ApplicationError."""
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await update(order, name, request, object)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


def return_request(
    resolution: ReturnResolution = ReturnResolution.REFUND,
    reason: ReturnReason = ReturnReason.DAMAGED,
    **lines: int,
) -> ReturnRequest:
    """`return_request(BOOK_DUNE=2)`: SKUs as keywords, `_` standing for `-`."""
    return ReturnRequest(
        lines=[ReturnLine(sku=sku.replace("_", "-"), quantity=n) for sku, n in lines.items()],
        reason=reason,
        resolution=resolution,
    )


async def request_return(order: OrderUnderTest, request: ReturnRequest) -> ReturnView:
    return await update(order, UPDATE_REQUEST_RETURN, request, ReturnView)


async def parcel_back(order: OrderUnderTest, ret: ReturnView, event_id: str) -> None:
    """The carrier delivers the customer's return parcel to the warehouse."""
    assert ret.tracking_number is not None
    await order.carrier(CarrierStatus.DELIVERED, event_id, tracking_number=ret.tracking_number)


async def return_in(order: OrderUnderTest, return_id: str, status: ReturnStatus) -> OrderView:
    def reached(view: OrderView) -> bool:
        return any(r.return_id == return_id and r.status is status for r in view.returns)

    return await eventually(order.view, reached)


def the_return(view: OrderView, return_id: str) -> ReturnView:
    (found,) = [r for r in view.returns if r.return_id == return_id]
    return found


def events(view: OrderView) -> list[str]:
    return [entry.event for entry in view.timeline]


def assert_ledger(order: OrderUnderTest, view: OrderView, refunds: list[int]) -> None:
    """Each refund named the captured authorization, had its own key, and the running total
    never passed what was captured."""
    captures = order.fakes.called("capture_payment")
    captured = sum(capture.amount for capture in captures)
    calls: list[RefundPaymentInput] = order.fakes.called("refund_payment")
    assert [call.amount for call in calls] == refunds
    assert {call.authorization_id for call in calls} <= {c.authorization_id for c in captures}
    assert len({call.idempotency_key for call in calls}) == len(calls)
    running = 0
    for call in calls:
        running += call.amount
        assert running <= captured
    assert view.payment.captured == captured
    assert view.payment.refunded == running == sum(r.amount for r in view.refunds)


# ---- returns for a refund --------------------------------------------------------------------


async def test_return_for_a_refund_books_a_label_then_restocks_and_refunds_the_lines(
    order: OrderUnderTest,
) -> None:
    await delivered(order, {"BOOK-DUNE": 2})
    ret = await request_return(order, return_request(BOOK_DUNE=2))

    assert ret.return_id == "RET-1"
    assert ret.status is ReturnStatus.AWAITING_PARCEL
    assert ret.tracking_number == f"RTN-{order.order_id}-RET-1"
    assert not ret.digital
    label = order.fakes.called("book_shipment")[-1]
    assert label.direction is ShipmentDirection.RETURN
    assert label.address == ADA.shipping_address
    assert order.fakes.emails()[-1] is EmailKind.RETURN_LABEL
    assert order.fakes.sent()[-1].reference == "RET-1"

    # In transit back: nothing happens yet.
    assert ret.tracking_number is not None
    await order.carrier(
        CarrierStatus.IN_TRANSIT, "evt-ret-transit", tracking_number=ret.tracking_number
    )
    await eventually(
        order.view,
        lambda v: any(e.detail.startswith("RET-1-label") for e in v.timeline),
    )
    assert order.fakes.called("restock") == []

    await parcel_back(order, ret, "evt-ret-delivered")
    view = await order.wait_for(OrderStatus.RETURNED)

    (restock,) = order.fakes.called("restock")
    assert (restock.order_id, restock.return_id) == (order.order_id, "RET-1")
    assert [(p.warehouse, [(ln.sku, ln.quantity) for ln in p.lines]) for p in restock.parcels] == [
        ("WH-EAST", [("BOOK-DUNE", 2)])
    ]
    done = the_return(view, "RET-1")
    assert done.status is ReturnStatus.REFUNDED
    assert done.refund_amount == 2 * DUNE  # the lines, not the shipping
    assert done.closed_at is not None
    (refund,) = view.refunds
    assert (refund.kind, refund.amount, refund.return_id) == (RefundKind.RETURN, 2 * DUNE, "RET-1")
    assert_ledger(order, view, [2 * DUNE])
    assert order.fakes.emails()[-1] is EmailKind.RETURN_REFUNDED
    assert events(view).index("return_received") < events(view).index("payment_refunded")

    final = await order.result()
    assert final.status is OrderStatus.COMPLETED
    assert final.returns == view.returns


async def test_partial_returns_add_up_partially_returned_then_returned(
    order: OrderUnderTest,
) -> None:
    await delivered(order, {"BOOK-DUNE": 3})

    first = await request_return(order, return_request(BOOK_DUNE=1))
    await parcel_back(order, first, "evt-ret-1")
    partial = await order.wait_for(OrderStatus.PARTIALLY_RETURNED)
    assert partial.payment.refunded == DUNE

    second = await request_return(
        order, return_request(reason=ReturnReason.CHANGED_MIND, BOOK_DUNE=2)
    )
    assert second.return_id == "RET-2"
    assert second.tracking_number != first.tracking_number
    await parcel_back(order, second, "evt-ret-2")
    returned = await order.wait_for(OrderStatus.RETURNED)

    assert [r.refund_amount for r in returned.returns] == [DUNE, 2 * DUNE]
    assert_ledger(order, returned, [DUNE, 2 * DUNE])
    statuses = [e.status for e in returned.timeline]
    assert statuses.index(OrderStatus.PARTIALLY_RETURNED) < statuses.index(OrderStatus.RETURNED)
    assert (await order.result()).status is OrderStatus.COMPLETED


async def test_a_return_that_never_arrives_is_closed_with_an_email_and_no_refund(
    order: OrderUnderTest,
) -> None:
    await delivered(order, {"BOOK-DUNE": 2})
    await request_return(order, return_request(BOOK_DUNE=1))

    final = await order.result()  # 30 days skipped: the parcel never came

    assert final.status is OrderStatus.COMPLETED
    ret = the_return(final, "RET-1")
    assert ret.status is ReturnStatus.NOT_RECEIVED
    assert ret.closed_at is not None and ret.refund_amount == 0
    assert order.fakes.called("refund_payment") == []
    assert order.fakes.called("restock") == []
    assert final.payment.refunded == 0 and final.refunds == []
    email = order.fakes.sent()[-1]
    assert (email.kind, email.reference) == (EmailKind.RETURN_NOT_RECEIVED, "RET-1")
    assert events(final).index("return_not_received") < events(final).index("completed")


# ---- exchanges -------------------------------------------------------------------------------


async def test_exchange_ships_the_same_items_again_at_no_charge(order: OrderUnderTest) -> None:
    await delivered(order, {"BOOK-DUNE": 1})
    ret = await request_return(
        order, return_request(ReturnResolution.EXCHANGE, ReturnReason.WRONG_ITEM, BOOK_DUNE=1)
    )
    await parcel_back(order, ret, "evt-ret")
    view = await return_in(order, "RET-1", ReturnStatus.EXCHANGE_SHIPPED)

    exchange_id = f"{order.order_id}-RET-1"
    exchange = the_return(view, "RET-1").exchange_shipment
    assert exchange is not None
    assert exchange.tracking_number == f"TRK-{order.order_id}-RET-1-exchange"
    assert exchange.warehouse == "WH-EAST"
    assert order.fakes.names()[-5:] == [
        "restock",
        "reserve_stock",
        "pick_and_pack",
        "book_shipment",
        "commit_stock",
    ]
    reserve = order.fakes.called("reserve_stock")[-1]
    assert reserve.order_id == exchange_id
    assert reserve.single_warehouse
    assert [(i.sku, i.quantity) for i in reserve.items] == [("BOOK-DUNE", 1)]
    assert order.fakes.called("pick_and_pack")[-1].order_id == exchange_id
    booked = order.fakes.called("book_shipment")[-1]
    assert booked.direction is ShipmentDirection.OUTBOUND
    assert order.fakes.called("commit_stock")[-1].order_id == exchange_id
    assert order.fakes.emails()[-1] is EmailKind.EXCHANGE_SHIPPED

    # Tracked like the original shipment, by its own tracking number.
    await order.carrier(
        CarrierStatus.IN_TRANSIT, "evt-x-1", tracking_number=exchange.tracking_number
    )
    await order.carrier(
        CarrierStatus.DELIVERED, "evt-x-2", tracking_number=exchange.tracking_number
    )
    view = await return_in(order, "RET-1", ReturnStatus.EXCHANGE_DELIVERED)
    shipped_again = the_return(view, "RET-1").exchange_shipment
    assert shipped_again is not None and shipped_again.status is CarrierStatus.DELIVERED
    assert [e.event_id for e in shipped_again.events] == ["evt-x-1", "evt-x-2"]
    assert view.status is OrderStatus.DELIVERED  # exchanged, not returned

    final = await order.result()
    assert final.status is OrderStatus.COMPLETED
    assert len(order.fakes.called("authorize_payment")) == 1
    assert len(order.fakes.called("capture_payment")) == 1
    assert order.fakes.called("refund_payment") == []
    assert final.payment.refunded == 0


async def test_exchange_out_of_stock_is_refunded_instead(order: OrderUnderTest) -> None:
    await delivered(order, {"BOOK-DUNE": 1})
    ret = await request_return(order, return_request(ReturnResolution.EXCHANGE, BOOK_DUNE=1))
    order.fakes.sold_out.add("BOOK-DUNE")
    await parcel_back(order, ret, "evt-ret")
    view = await order.wait_for(OrderStatus.RETURNED)

    done = the_return(view, "RET-1")
    assert done.status is ReturnStatus.REFUNDED
    assert done.exchange_shipment is None
    assert "exchange_unavailable" in events(view)
    assert len(order.fakes.called("pick_and_pack")) == 1  # the original parcel only
    assert_ledger(order, view, [DUNE])
    assert order.fakes.emails()[-1] is EmailKind.RETURN_REFUNDED


async def test_exchange_the_carrier_brings_back_is_refunded(order: OrderUnderTest) -> None:
    await delivered(order, {"BOOK-DUNE": 1})
    ret = await request_return(order, return_request(ReturnResolution.EXCHANGE, BOOK_DUNE=1))
    await parcel_back(order, ret, "evt-ret")
    view = await return_in(order, "RET-1", ReturnStatus.EXCHANGE_SHIPPED)
    exchange = the_return(view, "RET-1").exchange_shipment
    assert exchange is not None
    await order.carrier(
        CarrierStatus.RETURN_TO_SENDER, "evt-x", tracking_number=exchange.tracking_number
    )
    view = await order.wait_for(OrderStatus.RETURNED)
    assert the_return(view, "RET-1").status is ReturnStatus.REFUNDED
    assert "exchange_not_delivered" in events(view)
    assert_ledger(order, view, [DUNE])


# ---- refusals --------------------------------------------------------------------------------


async def test_returns_that_cannot_be_accepted_are_refused_with_the_reason(
    order: OrderUnderTest,
) -> None:
    await order.start({"BOOK-DUNE": 2, "EBOOK-DUNE": 1})
    await order.wait_for(OrderStatus.SHIPPED)
    early = await refused(order, UPDATE_REQUEST_RETURN, return_request(BOOK_DUNE=1))
    assert early.type == "ReturnRefused"
    assert early.message == "only a delivered order can be returned; it is shipped"
    await order.carrier(CarrierStatus.DELIVERED, "evt-delivered")
    await order.wait_for(OrderStatus.DELIVERED)

    cases = {
        "only 2 of BOOK-DUNE can still be returned, not 3": return_request(BOOK_DUNE=3),
        "BOOK-SOLDOUT is not part of this order": return_request(BOOK_SOLDOUT=1),
        "return digital and physical items separately": return_request(BOOK_DUNE=1, EBOOK_DUNE=1),
        "digital items can be refunded, not exchanged": return_request(
            ReturnResolution.EXCHANGE, EBOOK_DUNE=1
        ),
    }
    # The same SKU on two lines counts once, with both quantities.
    split = ReturnRequest(
        lines=[ReturnLine(sku="BOOK-DUNE", quantity=1), ReturnLine(sku="BOOK-DUNE", quantity=2)],
        reason=ReturnReason.OTHER,
    )
    for message, request in [*cases.items(), (next(iter(cases)), split)]:
        refusal = await refused(order, UPDATE_REQUEST_RETURN, request)
        assert (refusal.type, refusal.message) == ("ReturnRefused", message)

    view = await order.view()
    assert view.returns == []
    assert order.fakes.called("revoke_downloads") == []
    assert [b.direction for b in order.fakes.called("book_shipment")] == [
        ShipmentDirection.OUTBOUND
    ]


async def test_a_second_return_of_the_same_items_is_refused(order: OrderUnderTest) -> None:
    await delivered(order, {"BOOK-DUNE": 1})
    await request_return(order, return_request(BOOK_DUNE=1))

    refusal = await refused(order, UPDATE_REQUEST_RETURN, return_request(BOOK_DUNE=1))

    assert refusal.message == "only 0 of BOOK-DUNE can still be returned, not 1"
    assert [r.return_id for r in (await order.view()).returns] == ["RET-1"]
    assert len(order.fakes.called("book_shipment")) == 2  # the order's parcel and one label


async def test_a_return_in_flight_keeps_the_order_open_past_its_window(
    order: OrderUnderTest,
) -> None:
    timeouts = OrderTimeouts(
        return_window=timedelta(days=1), return_arrival_timeout=timedelta(days=10)
    )
    await delivered(order, {"BOOK-DUNE": 2}, timeouts)
    ret = await request_return(order, return_request(BOOK_DUNE=1))
    await order.env.sleep(timedelta(days=2))  # skipped: the window has closed

    assert (await order.handle.describe()).status is WorkflowExecutionStatus.RUNNING
    assert (await order.view()).status is OrderStatus.DELIVERED

    await parcel_back(order, ret, "evt-ret")
    final = await order.result()
    assert final.status is OrderStatus.COMPLETED
    assert the_return(final, "RET-1").status is ReturnStatus.REFUNDED
    assert events(final)[-2:] == ["partially_returned", "completed"]
    assert_ledger(order, final, [DUNE])


async def test_a_late_return_is_refused(order: OrderUnderTest) -> None:
    """Refused by the window, not by the order having closed: a return in flight keeps it open."""
    timeouts = OrderTimeouts(
        return_window=timedelta(days=1), return_arrival_timeout=timedelta(days=10)
    )
    view = await delivered(order, {"BOOK-DUNE": 2}, timeouts)
    await request_return(order, return_request(BOOK_DUNE=1))
    await order.env.sleep(timedelta(days=2))

    refusal = await refused(order, UPDATE_REQUEST_RETURN, return_request(BOOK_DUNE=1))

    assert refusal.type == "ReturnRefused"
    assert view.return_window_ends_at is not None
    assert refusal.message == (
        f"the return window closed on {view.return_window_ends_at:%Y-%m-%d %H:%M} UTC"
    )
    assert [r.return_id for r in (await order.view()).returns] == ["RET-1"]


# ---- goodwill refunds ------------------------------------------------------------------------


async def test_goodwill_refunds_are_bounded_by_what_is_left_of_the_capture(
    order: OrderUnderTest,
) -> None:
    await delivered(order, {"BOOK-DUNE": 1})
    total = DUNE + STANDARD_SHIPPING

    first = await update(
        order, UPDATE_REFUND, GoodwillRefundRequest(amount=1000, reason="late"), RefundView
    )
    assert (first.refund_id, first.kind, first.amount) == ("RF-1", RefundKind.GOODWILL, 1000)
    email = order.fakes.sent()[-1]
    assert (email.kind, email.reference) == (EmailKind.REFUND_ISSUED, "RF-1")

    too_much = await refused(
        order, UPDATE_REFUND, GoodwillRefundRequest(amount=total - 999, reason="more")
    )
    assert (too_much.type, too_much.message) == (
        "RefundRefused",
        "at most $13.98 is left to refund",
    )

    # A return after a goodwill refund gets only what is left: never past the capture.
    ret = await request_return(order, return_request(BOOK_DUNE=1))
    await parcel_back(order, ret, "evt-ret")
    view = await order.wait_for(OrderStatus.RETURNED)
    assert the_return(view, "RET-1").refund_amount == total - 1000

    nothing_left = await refused(order, UPDATE_REFUND, GoodwillRefundRequest(amount=1, reason="x"))
    assert nothing_left.message == "at most $0.00 is left to refund"
    assert_ledger(order, view, [1000, total - 1000])


async def test_concurrent_goodwill_refunds_never_pass_the_capture(order: OrderUnderTest) -> None:
    await delivered(order, {"BOOK-DUNE": 1})
    requests = [GoodwillRefundRequest(amount=1500, reason=f"agent {n}") for n in (1, 2, 3)]

    outcomes = await asyncio.gather(
        *(update(order, UPDATE_REFUND, r, RefundView) for r in requests), return_exceptions=True
    )

    granted = [o for o in outcomes if isinstance(o, RefundView)]
    assert len(granted) == 1
    for outcome in outcomes:
        if not isinstance(outcome, RefundView):
            assert isinstance(outcome, WorkflowUpdateFailedError)
            assert isinstance(outcome.cause, ApplicationError)
            assert outcome.cause.type == "RefundRefused"
    assert_ledger(order, await order.view(), [1500])


async def test_nothing_can_be_refunded_before_the_capture(order: OrderUnderTest) -> None:
    order.fakes.hold_pick_pack = True
    await order.start()
    await order.wait_for(OrderStatus.FULFILLING)

    refusal = await refused(order, UPDATE_REFUND, GoodwillRefundRequest(amount=100, reason="x"))

    assert refusal.message == "nothing was charged yet; the order is fulfilling"
    assert order.fakes.called("refund_payment") == []


# ---- digital lines ---------------------------------------------------------------------------


async def test_a_digital_return_refunds_at_once_and_revokes_the_download(
    order: OrderUnderTest,
) -> None:
    await delivered(order, {"EBOOK-DUNE": 1})

    ret = await request_return(
        order, return_request(reason=ReturnReason.NOT_AS_DESCRIBED, EBOOK_DUNE=1)
    )

    assert ret.digital and ret.status is ReturnStatus.REFUNDED
    assert ret.tracking_number is None and ret.refund_amount == EBOOK
    (revoke,) = order.fakes.called("revoke_downloads")
    assert (revoke.order_id, revoke.skus) == (order.order_id, ["EBOOK-DUNE"])
    assert order.fakes.called("book_shipment") == []
    assert order.fakes.called("restock") == []
    view = await order.view()
    assert view.status is OrderStatus.RETURNED
    assert_ledger(order, view, [EBOOK])
    assert order.fakes.emails()[-1] is EmailKind.RETURN_REFUNDED
    names = order.fakes.names()
    assert names.index("revoke_downloads") < names.index("refund_payment")


async def test_a_digital_line_of_a_mixed_order_is_partially_returned(
    order: OrderUnderTest,
) -> None:
    await delivered(order, {"BOOK-DUNE": 1, "EBOOK-DUNE": 1})
    await request_return(order, return_request(EBOOK_DUNE=1))
    view = await order.wait_for(OrderStatus.PARTIALLY_RETURNED)
    assert_ledger(order, view, [EBOOK])
    assert order.fakes.revoked == {(order.order_id, "EBOOK-DUNE")}


# ---- inquiries and feedback ------------------------------------------------------------------


async def test_inquiries_reach_the_support_mailbox_with_the_order(order: OrderUnderTest) -> None:
    await order.start()
    await order.wait_for(OrderStatus.SHIPPED)

    first = await update(order, UPDATE_ASK, InquiryRequest(message="Gift wrap?"), InquiryView)
    await order.carrier(CarrierStatus.DELIVERED, "evt-delivered")
    await order.wait_for(OrderStatus.DELIVERED)
    second = await update(order, UPDATE_ASK, InquiryRequest(message="Spine is bent"), InquiryView)

    assert (first.inquiry_id, second.inquiry_id) == ("Q-1", "Q-2")
    forwarded = order.fakes.called("notify_support")
    assert [f.inquiry for f in forwarded] == [first, second]
    assert [f.idempotency_key for f in forwarded] == [
        f"{order.order_id}:inquiry:Q-1",
        f"{order.order_id}:inquiry:Q-2",
    ]
    assert {f.customer_email for f in forwarded} == {ADA.email}
    assert forwarded[1].order.status is OrderStatus.DELIVERED  # the order's state, attached
    view = await order.view()
    assert view.inquiries == [first, second]
    assert [e.detail for e in view.timeline if e.event == "inquiry"] == [
        "Q-1: Gift wrap?",
        "Q-2: Spine is bent",
    ]


async def test_feedback_after_delivery_once(order: OrderUnderTest) -> None:
    await order.start()
    await order.wait_for(OrderStatus.SHIPPED)
    early = await refused(order, UPDATE_FEEDBACK, FeedbackRequest(rating=5))
    assert (early.type, early.message) == (
        "FeedbackRefused",
        "feedback opens once the order is delivered",
    )
    await order.carrier(CarrierStatus.DELIVERED, "evt-delivered")
    await order.wait_for(OrderStatus.DELIVERED)

    given = await update(
        order, UPDATE_FEEDBACK, FeedbackRequest(rating=4, comment="Quick."), FeedbackView
    )
    again = await refused(order, UPDATE_FEEDBACK, FeedbackRequest(rating=1))

    assert (given.rating, given.comment) == (4, "Quick.")
    assert again.message == "feedback was already given for this order"
    assert (await order.view()).feedback == given


async def test_cancel_after_delivery_names_the_status(order: OrderUnderTest) -> None:
    await delivered(order, {"BOOK-DUNE": 1})
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await order.cancel()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "CancelRefused"
    assert cause.message == f"order {order.order_id} can no longer be cancelled: it is delivered"
    assert cause.details == ("delivered",)
