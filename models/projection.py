"""The one projection of an order into the read model: its row, its timeline, its parcels' events.

Whoever writes the read model (the workflow's `record_order`, POST /orders at placement, the
carrier webhook for an order that has closed) builds its rows here, so a column means the same
thing whoever wrote it and a new column is filled everywhere at once.
"""

from typing import Any

from models.orders import CURRENCY, OrderView, tracking_numbers
from models.shipments import CarrierEvent, ShipmentView
from models.tables import OrderEvent, OrderHold, OrderRecord, ShipmentEvent


def order_record_values(view: OrderView, version: int) -> dict[str, Any]:
    """Every column of the order's `OrderRecord` at `version`, keyed by column name: the whole
    row, so one UPDATE replaces one snapshot with another and never mixes two."""
    return {
        "order_id": view.order_id,
        "customer_id": view.customer_id,
        "placed_by": view.placed_by,
        "status": view.status.value,
        "reason_code": view.reason.code if view.reason else None,
        "currency": view.totals.currency if view.totals else CURRENCY,
        "total": view.totals.total if view.totals else None,
        "captured": view.payment.captured,
        "refunded": view.payment.refunded,
        "tracking_numbers": tracking_numbers(view),
        "open_holds": open_hold_codes(view),
        "version": version,
        "placed_at": view.placed_at,
        "updated_at": view.updated_at,
        "view_json": view.model_dump_json(),
    }


def open_hold_codes(view: OrderView) -> list[str]:
    """The codes of the holds the order waits on, as `OrderHolds` lists them."""
    return sorted({hold.code.value for hold in view.holds if hold.resolution is None})


def hold_rows(view: OrderView) -> list[OrderHold]:
    """One row per hold, open or resolved, for the review queues."""
    return [
        OrderHold(
            order_id=view.order_id,
            hold_id=hold.hold_id,
            code=hold.code.value,
            placed_at=hold.placed_at,
            resolved_at=hold.resolved_at,
        )
        for hold in view.holds
    ]


def placed_order_record(view: OrderView) -> OrderRecord:
    """An order's first read-model row, as it was placed: version 0, which the workflow's own
    records (1, 2, ...) replace."""
    return OrderRecord(**order_record_values(view, 0))


def timeline_rows(view: OrderView, recorded: int) -> list[OrderEvent]:
    """The timeline entries past the first `recorded`, numbered by their place in it.

    The timeline only grows, so entry `seq` is the same in every snapshot: rows written from
    an older snapshot are never wrong, only fewer.
    """
    return [
        OrderEvent(
            order_id=view.order_id,
            seq=seq,
            at=entry.at,
            event=entry.event,
            status=entry.status.value,
            detail=entry.detail,
        )
        for seq, entry in enumerate(view.timeline[recorded:], start=recorded)
    ]


def tracked_shipments(view: OrderView) -> list[ShipmentView]:
    """The parcels the carrier tracks for the order: outbound ones once booked, and exchanges."""
    exchanges = [r.exchange_shipment for r in view.returns if r.exchange_shipment is not None]
    return [s for s in [*view.shipments, *exchanges] if s.tracking_number is not None]


def shipment_event_row(event: CarrierEvent) -> ShipmentEvent:
    """The row a carrier's tracking event is kept as, whoever records it."""
    return ShipmentEvent(
        tracking_number=event.tracking_number,
        event_id=event.event_id,
        status=event.status.value,
        occurred_at=event.occurred_at,
        description=event.description,
    )
