"""The order read model: what list queries and closed orders are answered from.

The workflow records a numbered snapshot on every change; writes are idempotent and a late,
older snapshot never overwrites a newer one.
"""

from sqlalchemy import Engine, func
from sqlmodel import Session, select
from temporalio import activity

from models.activities import RecordOrderInput
from models.tables import (
    OrderEvent,
    OrderRecord,
    Shipment,
    ShipmentEvent,
    placed_order_record,
    shipment_event_row,
    utcnow,
)


class ReadModelActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name="record_order")
    def record_order(self, request: RecordOrderInput) -> None:
        order = request.order
        with Session(self._engine) as session:
            row = session.get(OrderRecord, order.order_id)
            if row is not None and row.version >= request.version:
                return
            if row is None:
                row = placed_order_record(order)
            row.status = order.status.value
            row.reason_code = order.reason.code if order.reason else None
            row.total = order.totals.total if order.totals else None
            row.currency = order.totals.currency if order.totals else row.currency
            row.captured = order.payment.captured
            row.refunded = order.payment.refunded
            row.tracking_number = order.shipment.tracking_number if order.shipment else None
            row.updated_at = order.updated_at
            row.version = request.version
            row.view_json = order.model_dump_json()
            session.add(row)

            recorded = session.exec(
                select(func.count())
                .select_from(OrderEvent)
                .where(OrderEvent.order_id == order.order_id)
            ).one()
            for seq, entry in enumerate(order.timeline[recorded:], start=recorded):
                session.add(
                    OrderEvent(
                        order_id=order.order_id,
                        seq=seq,
                        at=entry.at,
                        event=entry.event,
                        status=entry.status.value,
                        detail=entry.detail,
                    )
                )

            if order.shipment is not None:
                shipment = session.get(Shipment, order.shipment.tracking_number)
                if shipment is not None and order.shipment.status is not None:
                    shipment.status = order.shipment.status.value
                    shipment.updated_at = utcnow()
                    session.add(shipment)
                known = set(
                    session.exec(
                        select(ShipmentEvent.event_id).where(
                            ShipmentEvent.tracking_number == order.shipment.tracking_number
                        )
                    )
                )
                for event in order.shipment.events:
                    if event.event_id not in known:
                        session.add(shipment_event_row(event))
            session.commit()
