"""Orders shipped in several parcels from several warehouses, on the time-skipping server.

The fakes keep BOOK-DUNE in WH-EAST and BOOK-EARTHSEA in WH-WEST, so an order of both ships as
SHP-1 from WH-EAST and SHP-2 from WH-WEST. Holding a warehouse's pick/pack lets a test decide
which parcel is handed over first.
"""

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from models.activities import EmailKind
from models.orders import (
    OrderStatus,
    OrderView,
    RefundKind,
    ReturnReason,
    ReturnResolution,
    ReturnStatus,
)
from models.shipments import CarrierStatus
from models.wire import UPDATE_REQUEST_RETURN
from tests.conftest import eventually
from tests.workflows.conftest import OrderUnderTest
from tests.workflows.test_returns import (
    parcel_back,
    request_return,
    return_in,
    return_request,
    the_return,
    update,
)

DUNE, EARTHSEA = 1899, 1299
STANDARD_SHIPPING = 499
SPLIT = {"BOOK-DUNE": 2, "BOOK-EARTHSEA": 1}
TOTAL = 2 * DUNE + EARTHSEA + STANDARD_SHIPPING


async def shipped_in_turn(order: OrderUnderTest) -> OrderView:
    """SHP-1 handed over while WH-WEST still picks SHP-2, then SHP-2: the order `shipped`."""
    order.fakes.held_warehouses.add("WH-WEST")
    await order.start(SPLIT)
    partial = await order.wait_for(OrderStatus.PARTIALLY_SHIPPED)
    assert [s.shipped_at is not None for s in partial.shipments] == [True, False]
    order.fakes.held_warehouses.clear()
    return await order.wait_for(OrderStatus.SHIPPED)


async def deliver(
    order: OrderUnderTest, view: OrderView, shipment_id: str, status: CarrierStatus
) -> None:
    (shipment,) = [s for s in view.shipments if s.shipment_id == shipment_id]
    await order.carrier(
        status, f"evt-{shipment_id}-{status}", tracking_number=shipment.tracking_number
    )


async def test_a_split_order_ships_two_parcels_captures_each_and_is_delivered(
    order: OrderUnderTest,
) -> None:
    shipped = await shipped_in_turn(order)

    assert [(s.shipment_id, s.warehouse) for s in shipped.shipments] == [
        ("SHP-1", "WH-EAST"),
        ("SHP-2", "WH-WEST"),
    ]
    assert [[(ln.sku, ln.quantity) for ln in s.lines] for s in shipped.shipments] == [
        [("BOOK-DUNE", 2)],
        [("BOOK-EARTHSEA", 1)],
    ]
    picks = order.fakes.called("pick_and_pack")
    assert sorted((p.shipment_id, p.warehouse) for p in picks) == [
        ("SHP-1", "WH-EAST"),
        ("SHP-2", "WH-WEST"),
    ]
    assert sorted(c.warehouse for c in order.fakes.called("commit_stock")) == ["WH-EAST", "WH-WEST"]

    # One authorization; a capture per parcel at its hand-over, the first with the shipping fee.
    (authorize,) = order.fakes.called("authorize_payment")
    captures = order.fakes.called("capture_payment")
    assert authorize.amount == TOTAL
    assert [(c.shipment_id, c.amount) for c in captures] == [
        ("SHP-1", 2 * DUNE + STANDARD_SHIPPING),
        ("SHP-2", EARTHSEA),
    ]
    assert len({c.idempotency_key for c in captures}) == 2
    assert {c.authorization_id for c in captures} == {f"auth-{authorize.idempotency_key}"}
    assert [c.shipment_id for c in shipped.payment.captures] == ["SHP-1", "SHP-2"]
    assert shipped.payment.captured == TOTAL
    # Everything was captured, so there is nothing left to release.
    assert order.fakes.called("void_payment") == []

    sent = [(e.kind, e.reference) for e in order.fakes.sent()]
    assert sent == [
        (EmailKind.CONFIRMATION, None),
        (EmailKind.SHIPPED, "SHP-1"),
        (EmailKind.SHIPPED, "SHP-2"),
    ]

    # One parcel arriving is not the order delivered.
    await deliver(order, shipped, "SHP-1", CarrierStatus.DELIVERED)
    await eventually(order.view, lambda v: v.shipments[0].status is CarrierStatus.DELIVERED)
    assert (await order.view()).status is OrderStatus.SHIPPED
    await deliver(order, shipped, "SHP-2", CarrierStatus.DELIVERED)
    delivered = await order.wait_for(OrderStatus.DELIVERED)
    assert [s.status for s in delivered.shipments] == [CarrierStatus.DELIVERED] * 2

    final = await order.result()
    assert final.status is OrderStatus.COMPLETED
    assert final.payment.refunded == 0
    assert order.fakes.emails().count(EmailKind.DELIVERED) == 1


async def test_one_event_id_on_two_parcels_moves_each(order: OrderUnderTest) -> None:
    """A carrier's event ids are its own per parcel: the same id on another parcel is news."""
    shipped = await shipped_in_turn(order)
    for shipment in shipped.shipments:
        await order.carrier(
            CarrierStatus.DELIVERED, "evt-same", tracking_number=shipment.tracking_number
        )
    final = await order.result()  # the return window skipped: nothing left running

    assert final.status is OrderStatus.COMPLETED
    assert [[e.event_id for e in s.events] for s in final.shipments] == [["evt-same"]] * 2


async def test_a_parcel_returned_to_sender_refunds_its_lines_and_the_rest_is_delivered(
    order: OrderUnderTest,
) -> None:
    shipped = await shipped_in_turn(order)
    await deliver(order, shipped, "SHP-1", CarrierStatus.DELIVERED)
    await deliver(order, shipped, "SHP-2", CarrierStatus.RETURN_TO_SENDER)
    partial = await order.wait_for(OrderStatus.PARTIALLY_DELIVERED)

    (refund,) = partial.refunds
    assert (refund.kind, refund.amount) == (RefundKind.DELIVERY_FAILED, EARTHSEA)
    assert partial.payment.refunded == EARTHSEA
    (restock,) = order.fakes.called("restock")
    assert restock.return_id == "SHP-2"
    assert [(p.warehouse, p.lines[0].sku) for p in restock.parcels] == [
        ("WH-WEST", "BOOK-EARTHSEA")
    ]
    assert order.fakes.emails()[-1] is EmailKind.PARTIALLY_DELIVERED
    assert partial.return_window_ends_at is not None

    # What never arrived cannot be returned; what did can.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await update(order, UPDATE_REQUEST_RETURN, return_request(BOOK_EARTHSEA=1), object)
    assert isinstance(refused.value.cause, ApplicationError)
    assert "only 0 of BOOK-EARTHSEA" in refused.value.cause.message
    ret = await request_return(order, return_request(BOOK_DUNE=2))
    await parcel_back(order, ret, "evt-ret")
    returned = await order.wait_for(OrderStatus.RETURNED)
    assert returned.payment.refunded == EARTHSEA + 2 * DUNE
    assert (await order.result()).status is OrderStatus.COMPLETED


async def test_every_parcel_failing_refunds_the_whole_order(order: OrderUnderTest) -> None:
    shipped = await shipped_in_turn(order)
    await deliver(order, shipped, "SHP-1", CarrierStatus.FAILURE)
    await deliver(order, shipped, "SHP-2", CarrierStatus.RETURN_TO_SENDER)
    final = await order.result()

    assert final.status is OrderStatus.DELIVERY_FAILED
    assert final.payment.refunded == final.payment.captured == TOTAL
    assert final.reason is not None and final.reason.code == "failure"
    # Only the parcel that came back is restocked; the lost one is not.
    assert [r.return_id for r in order.fakes.called("restock")] == ["SHP-2"]


async def test_a_cancel_before_the_first_hand_over_stops_both_warehouses(
    order: OrderUnderTest,
) -> None:
    order.fakes.hold_pick_pack = True
    await order.start(SPLIT)
    await order.called("pick_and_pack", 2)

    cancelled = await order.cancel("changed my mind")

    assert cancelled.status is OrderStatus.CANCELLED
    assert order.fakes.pick_pack_cancelled
    assert len(order.fakes.called("void_payment")) == 1
    assert len(order.fakes.called("release_stock")) == 1
    for name in ("book_shipment", "commit_stock", "capture_payment"):
        assert order.fakes.called(name) == [], name
    # Both warehouses got their units back.
    assert order.fakes.catalog["BOOK-DUNE"].stock["WH-EAST"] == 100
    assert order.fakes.catalog["BOOK-EARTHSEA"].stock["WH-WEST"] == 100


async def test_no_cancel_once_the_first_parcel_is_with_the_carrier(order: OrderUnderTest) -> None:
    order.fakes.held_warehouses.add("WH-WEST")
    await order.start(SPLIT)
    await order.wait_for(OrderStatus.PARTIALLY_SHIPPED)

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await order.cancel()
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.details == ("partially_shipped",)
    order.fakes.held_warehouses.clear()
    await order.wait_for(OrderStatus.SHIPPED)
    assert order.fakes.called("void_payment") == []


async def test_returns_and_exchanges_on_a_split_order_go_back_to_their_warehouses(
    order: OrderUnderTest,
) -> None:
    shipped = await shipped_in_turn(order)
    for shipment_id in ("SHP-1", "SHP-2"):
        await deliver(order, shipped, shipment_id, CarrierStatus.DELIVERED)
    await order.wait_for(OrderStatus.DELIVERED)

    refund = await request_return(order, return_request(BOOK_EARTHSEA=1))
    exchange = await request_return(
        order,
        return_request(ReturnResolution.EXCHANGE, ReturnReason.WRONG_ITEM, BOOK_DUNE=1),
    )
    await parcel_back(order, refund, "evt-ret-1")
    await parcel_back(order, exchange, "evt-ret-2")
    view = await return_in(order, "RET-2", ReturnStatus.EXCHANGE_SHIPPED)

    restocked = {
        r.return_id: [(p.warehouse, p.lines[0].sku) for p in r.parcels]
        for r in order.fakes.called("restock")
    }
    assert restocked == {
        "RET-1": [("WH-WEST", "BOOK-EARTHSEA")],
        "RET-2": [("WH-EAST", "BOOK-DUNE")],
    }
    assert the_return(view, "RET-1").refund_amount == EARTHSEA
    replacement = the_return(view, "RET-2").exchange_shipment
    assert replacement is not None and replacement.warehouse == "WH-EAST"
    assert view.status is OrderStatus.PARTIALLY_RETURNED
    await order.carrier(
        CarrierStatus.DELIVERED, "evt-x", tracking_number=replacement.tracking_number
    )
    await return_in(order, "RET-2", ReturnStatus.EXCHANGE_DELIVERED)
    final = await order.result()
    assert final.status is OrderStatus.COMPLETED
    assert final.payment.refunded == EARTHSEA
