"""The order's pure rules, without any server."""

from datetime import UTC, datetime, timedelta

from models.orders import (
    DeliveryOption,
    OrderLine,
    OrderStatus,
    ReturnLine,
    ReturnReason,
    ReturnResolution,
    ReturnStatus,
    ReturnView,
    order_totals,
)
from models.shipments import CarrierEvent, CarrierStatus, ShipmentLine, ShipmentView
from workflows import rules

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PRICED = [
    OrderLine(sku="BOOK-DUNE", name="Dune", quantity=3, unit_price=1899, digital=False),
    OrderLine(sku="BOOK-EARTHSEA", name="Earthsea", quantity=1, unit_price=1299, digital=False),
    OrderLine(sku="EBOOK-DUNE", name="Dune e-book", quantity=1, unit_price=999, digital=True),
]


def parcel(
    shipment_id: str, warehouse: str, status: CarrierStatus | None, **units: int
) -> ShipmentView:
    return ShipmentView(
        shipment_id=shipment_id,
        warehouse=warehouse,
        status=status,
        lines=[ShipmentLine(sku=sku.replace("_", "-"), quantity=n) for sku, n in units.items()],
    )


def a_return(status: ReturnStatus, **units: int) -> ReturnView:
    return ReturnView(
        return_id="RET-X",
        lines=[ShipmentLine(sku=sku.replace("_", "-"), quantity=n) for sku, n in units.items()],
        reason=ReturnReason.DAMAGED,
        resolution=ReturnResolution.REFUND,
        status=status,
        requested_at=T0,
    )


def test_captures_of_all_parcels_add_up_to_the_total() -> None:
    totals = order_totals(PRICED, DeliveryOption.STANDARD)
    east = parcel("SHP-1", "WH-EAST", None, BOOK_DUNE=2)
    west = parcel("SHP-2", "WH-WEST", None, BOOK_DUNE=1, BOOK_EARTHSEA=1)
    first = rules.capture_amount(west, PRICED, totals, first=True)
    second = rules.capture_amount(east, PRICED, totals, first=False)
    assert first == 1899 + 1299 + totals.shipping + 999  # shipping and the e-book go first
    assert first + second == totals.total


def test_statuses_follow_the_parcels() -> None:
    shipped = parcel("SHP-1", "WH-EAST", None, BOOK_DUNE=1)
    waiting = parcel("SHP-2", "WH-WEST", None, BOOK_EARTHSEA=1)
    shipped.shipped_at = T0
    assert rules.shipping_status([shipped, waiting]) is OrderStatus.PARTIALLY_SHIPPED
    waiting.shipped_at = T0
    assert rules.shipping_status([shipped, waiting]) is OrderStatus.SHIPPED
    assert rules.delivery_status(2, 0) is OrderStatus.DELIVERED
    assert rules.delivery_status(1, 1) is OrderStatus.PARTIALLY_DELIVERED
    assert rules.delivery_status(0, 2) is OrderStatus.DELIVERY_FAILED
    assert rules.delivery_status(0, 0) is OrderStatus.DELIVERED  # digital only


def test_a_parcel_only_moves_forward_and_its_events_stay_in_time_order() -> None:
    shipment = parcel("SHP-1", "WH-EAST", None, BOOK_DUNE=1)

    def event(event_id: str, status: CarrierStatus, hours: int) -> CarrierEvent:
        return CarrierEvent(
            event_id=event_id,
            tracking_number="OM1",
            status=status,
            occurred_at=T0 + timedelta(hours=hours),
        )

    rules.merge_event(shipment, event("e2", CarrierStatus.DELIVERED, 5))
    rules.merge_event(shipment, event("e1", CarrierStatus.IN_TRANSIT, 1))
    assert shipment.status is CarrierStatus.DELIVERED
    assert [e.event_id for e in shipment.events] == ["e1", "e2"]
    assert rules.is_final(shipment)


def test_only_delivered_units_are_returnable_and_only_once() -> None:
    shipments = [
        parcel("SHP-1", "WH-EAST", CarrierStatus.DELIVERED, BOOK_DUNE=2),
        parcel("SHP-2", "WH-WEST", CarrierStatus.RETURN_TO_SENDER, BOOK_DUNE=1, BOOK_EARTHSEA=1),
    ]
    earlier = [a_return(ReturnStatus.REFUNDED, BOOK_DUNE=1)]
    never_came = [a_return(ReturnStatus.NOT_RECEIVED, BOOK_DUNE=2)]
    assert rules.returnable("BOOK-DUNE", shipments, PRICED, []) == 2
    assert rules.returnable("BOOK-DUNE", shipments, PRICED, earlier) == 1
    assert rules.returnable("BOOK-DUNE", shipments, PRICED, never_came) == 2
    assert rules.returnable("BOOK-EARTHSEA", shipments, PRICED, []) == 0
    assert rules.returnable("EBOOK-DUNE", shipments, PRICED, []) == 1


def test_returned_units_go_back_to_the_warehouses_that_sent_them() -> None:
    shipments = [
        parcel("SHP-1", "WH-EAST", CarrierStatus.DELIVERED, BOOK_DUNE=1),
        parcel("SHP-2", "WH-WEST", CarrierStatus.DELIVERED, BOOK_DUNE=2, BOOK_EARTHSEA=1),
    ]
    lines = [ReturnLine(sku="BOOK-DUNE", quantity=2), ReturnLine(sku="BOOK-EARTHSEA", quantity=1)]
    back = rules.restock_parcels(lines, shipments, [])
    assert [(p.warehouse, [(ln.sku, ln.quantity) for ln in p.lines]) for p in back] == [
        ("WH-EAST", [("BOOK-DUNE", 1)]),
        ("WH-WEST", [("BOOK-DUNE", 1), ("BOOK-EARTHSEA", 1)]),
    ]
    # An earlier return already took WH-EAST's copy back: this one goes to WH-WEST.
    earlier = [a_return(ReturnStatus.REFUNDED, BOOK_DUNE=1)]
    again = rules.restock_parcels([ReturnLine(sku="BOOK-DUNE", quantity=1)], shipments, earlier)
    assert [(p.warehouse, p.lines[0].quantity) for p in again] == [("WH-WEST", 1)]


def test_returned_means_every_unit_that_arrived() -> None:
    shipments = [
        parcel("SHP-1", "WH-EAST", CarrierStatus.DELIVERED, BOOK_DUNE=3),
        parcel("SHP-2", "WH-WEST", CarrierStatus.FAILURE, BOOK_EARTHSEA=1),
    ]
    physical = PRICED[:2]
    some = [a_return(ReturnStatus.REFUNDED, BOOK_DUNE=2)]
    all_of_it = [*some, a_return(ReturnStatus.REFUNDED, BOOK_DUNE=1)]
    assert rules.return_status(some, shipments, physical) is OrderStatus.PARTIALLY_RETURNED
    assert rules.return_status(all_of_it, shipments, physical) is OrderStatus.RETURNED


def test_merged_lines_may_pass_the_per_line_bound_without_failing() -> None:
    """Bounds are the validator's to refuse; merging must never raise on its own."""
    merged = rules.merge_lines(
        [ReturnLine(sku="BOOK-DUNE", quantity=999), ReturnLine(sku="BOOK-DUNE", quantity=2)]
    )
    assert [(line.sku, line.quantity) for line in merged] == [("BOOK-DUNE", 1001)]
