"""ReadModelActivities: numbered snapshots, so a late older one never overwrites a newer."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

from activities.read_model import ReadModelActivities
from models.activities import RecordOrderInput
from models.orders import (
    CarrierEvent,
    CarrierStatus,
    DeliveryOption,
    OrderItem,
    OrderStatus,
    OrderView,
    ShipmentView,
    TimelineEntry,
    Totals,
)
from models.tables import OrderEvent, OrderRecord, Shipment, ShipmentEvent

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
STAGES = [OrderStatus.RECEIVED, OrderStatus.CONFIRMED, OrderStatus.FULFILLING, OrderStatus.SHIPPED]


def snapshot(version: int, *, events: int = 0) -> RecordOrderInput:
    """The order as the workflow saw it at its `version`-th change (1-based)."""
    status = STAGES[min(version, len(STAGES)) - 1]
    shipment = None
    if status is OrderStatus.SHIPPED:
        shipment = ShipmentView(
            carrier="simulated-carrier",
            tracking_number="OMTRACK1",
            status=CarrierStatus.IN_TRANSIT if events else None,
            events=[
                CarrierEvent(
                    event_id=f"evt-{n}",
                    tracking_number="OMTRACK1",
                    status=CarrierStatus.IN_TRANSIT,
                    occurred_at=T0 + timedelta(hours=n),
                )
                for n in range(events)
            ],
        )
    order = OrderView(
        order_id="o-1",
        customer_id="cus_ada",
        status=status,
        items=[OrderItem(sku="BOOK-DUNE", quantity=1)],
        delivery=DeliveryOption.STANDARD,
        totals=Totals(subtotal=1899, shipping=499, total=2398),
        shipment=shipment,
        timeline=[
            TimelineEntry(at=T0 + timedelta(minutes=n), event=f"step-{n}", status=STAGES[0])
            for n in range(version)
        ],
        placed_at=T0,
        updated_at=T0 + timedelta(minutes=version),
    )
    return RecordOrderInput(order=order, version=version)


def stored(engine: Engine) -> tuple[OrderRecord, list[int], list[str]]:
    with Session(engine) as session:
        row = session.get(OrderRecord, "o-1")
        assert row is not None
        seqs = session.exec(
            select(OrderEvent.seq).where(OrderEvent.order_id == "o-1").order_by(OrderEvent.seq)  # type: ignore[arg-type]
        ).all()
        shipment_events = session.exec(
            select(ShipmentEvent.event_id).where(ShipmentEvent.tracking_number == "OMTRACK1")
        ).all()
        return row, list(seqs), sorted(shipment_events)


def test_an_older_snapshot_arriving_late_does_not_overwrite_a_newer(engine: Engine) -> None:
    read_model = ReadModelActivities(engine)
    env = ActivityEnvironment()
    env.run(read_model.record_order, snapshot(1))
    env.run(read_model.record_order, snapshot(3))
    env.run(read_model.record_order, snapshot(2))  # late

    row, seqs, _ = stored(engine)
    assert (row.status, row.version) == ("fulfilling", 3)
    assert OrderView.model_validate_json(row.view_json).status is OrderStatus.FULFILLING
    assert seqs == [0, 1, 2]  # the timeline is neither duplicated nor rewound

    env.run(read_model.record_order, snapshot(3))  # a retried write changes nothing
    assert stored(engine)[1] == [0, 1, 2]


def test_shipment_status_and_events_are_recorded_once(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(
            Shipment(
                tracking_number="OMTRACK1",
                idempotency_key="book-1",
                order_id="o-1",
                carrier="simulated-carrier",
                service="standard",
            )
        )
        session.commit()
    read_model = ReadModelActivities(engine)
    env = ActivityEnvironment()
    env.run(read_model.record_order, snapshot(4, events=2))
    env.run(read_model.record_order, snapshot(5, events=3))

    row, seqs, shipment_events = stored(engine)
    assert (row.status, row.version, row.tracking_number, row.total) == (
        "shipped",
        5,
        "OMTRACK1",
        2398,
    )
    assert seqs == [0, 1, 2, 3, 4]
    assert shipment_events == ["evt-0", "evt-1", "evt-2"]
    with Session(engine) as session:
        shipment = session.get(Shipment, "OMTRACK1")
        assert shipment is not None and shipment.status == "in_transit"
