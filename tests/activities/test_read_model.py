"""ReadModelActivities: numbered snapshots, so a late older one never overwrites a newer, and
the email a change triggers is recorded with it and sent after it (SQLite, and PostgreSQL)."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import Engine, event, update
from sqlmodel import Session, col, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.downloads import DownloadLinks
from activities.email_sender import Delivery, deliver, due_keys
from activities.errors import DATA_REJECTED
from activities.notifications import Mailer
from activities.read_model import ReadModelActivities
from models.activities import EmailKind, OrderEmail, RecordOrderInput
from models.holds import HoldCode, HoldResolution, HoldView
from models.orders import (
    DeliveryOption,
    OrderItem,
    OrderLine,
    OrderStatus,
    OrderView,
    PaymentSummary,
    Problem,
    ReturnReason,
    ReturnResolution,
    ReturnStatus,
    ReturnView,
    TimelineEntry,
    Totals,
)
from models.projection import order_record_values, placed_order_record
from models.shipments import CarrierEvent, CarrierStatus, ShipmentLine, ShipmentView
from models.tables import (
    OrderEvent,
    OrderHold,
    OrderRecord,
    SentEmail,
    Shipment,
    ShipmentEvent,
)
from tests.activities.email_helpers import SendAtOnce

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
STAGES = [OrderStatus.RECEIVED, OrderStatus.CONFIRMED, OrderStatus.FULFILLING, OrderStatus.SHIPPED]
LINES = [
    OrderLine(sku="BOOK-DUNE", name="Dune", quantity=1, unit_price=1899, digital=False),
    OrderLine(
        sku="BOOK-NEUROMANCER", name="Neuromancer", quantity=1, unit_price=1599, digital=False
    ),
]
# One parcel per warehouse: (shipment id, warehouse, tracking number, SKU).
PARCELS = [
    ("SHP-1", "WH-EAST", "OMTRACK1", "BOOK-DUNE"),
    ("SHP-2", "WH-WEST", "OMTRACK2", "BOOK-NEUROMANCER"),
]


class CountingNotifier:
    """Keeps what it is asked to send; fails the first `failures` sends, like a mail server
    that is down."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[EmailMessage] = []
        self._failures = failures
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        with self._lock:
            if self._failures:
                self._failures -= 1
                raise ConnectionRefusedError("mail server down")
            self.sent.append(message)

    def keys(self) -> list[str]:
        with self._lock:
            return [str(m["X-Ordermill-Key"]) for m in self.sent]


def read_model(engine: Engine, notifier: CountingNotifier | None = None) -> ReadModelActivities:
    mailer = Mailer(
        sender="orders@shop.example",
        links=DownloadLinks("https://shop.example", "test-secret", ttl=timedelta(days=30)),
        support_mailbox="support@shop.example",
    )
    return ReadModelActivities(
        engine, mailer, SendAtOnce(engine, (notifier or CountingNotifier()).send)
    )


def lease_passed(engine: Engine) -> None:
    """As if every sender's lease, or backoff, had run out."""
    with Session(engine) as session:
        session.exec(update(SentEmail).values(next_attempt_at=None))
        session.commit()


def record(activities: ReadModelActivities, request: RecordOrderInput) -> None:
    ActivityEnvironment().run(activities.record_order, request)


def parcels(*, events: int = 0) -> list[ShipmentView]:
    """The order's two parcels, handed to the carrier, each with `events` tracking events."""
    return [
        ShipmentView(
            shipment_id=shipment_id,
            warehouse=warehouse,
            lines=[ShipmentLine(sku=sku, quantity=1)],
            status=CarrierStatus.IN_TRANSIT if events else None,
            carrier="simulated-carrier",
            tracking_number=tracking,
            shipped_at=T0,
            events=[
                CarrierEvent(
                    event_id=f"{tracking}-evt-{n}",
                    tracking_number=tracking,
                    status=CarrierStatus.IN_TRANSIT,
                    occurred_at=T0 + timedelta(hours=n),
                )
                for n in range(events)
            ],
        )
        for shipment_id, warehouse, tracking, sku in PARCELS
    ]


def snapshot(version: int, *, events: int = 0, email: OrderEmail | None = None) -> RecordOrderInput:
    """The order as the workflow saw it at its `version`-th change (1-based)."""
    status = STAGES[min(version, len(STAGES)) - 1]
    order = OrderView(
        order_id="o-1",
        customer_id="cus_ada",
        status=status,
        items=[OrderItem(sku=line.sku, quantity=1) for line in LINES],
        lines=LINES,
        delivery=DeliveryOption.STANDARD,
        totals=Totals(subtotal=3498, shipping=499, total=3997),
        shipments=parcels(events=events) if status is OrderStatus.SHIPPED else [],
        timeline=[
            TimelineEntry(at=T0 + timedelta(minutes=n), event=f"step-{n}", status=STAGES[0])
            for n in range(version)
        ],
        placed_at=T0,
        updated_at=T0 + timedelta(minutes=version),
    )
    return RecordOrderInput(order=order, version=version, email=email)


def order_email(kind: EmailKind, reference: str | None = None) -> OrderEmail:
    return OrderEmail(
        idempotency_key=f"o-1:{kind.value}" + (f":{reference}" if reference else ""),
        kind=kind,
        to="ada@example.com",
        customer_name="Ada Lovelace",
        reference=reference,
    )


def book(engine: Engine, *tracking_numbers: str) -> None:
    """The carrier's shipment rows, as `book_shipment` leaves them."""
    with Session(engine) as session:
        for n, tracking in enumerate(tracking_numbers):
            session.add(
                Shipment(
                    tracking_number=tracking,
                    idempotency_key=f"book-{n}",
                    order_id="o-1",
                    carrier="simulated-carrier",
                    service="standard",
                )
            )
        session.commit()


def _utc(value: Any) -> Any:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def stored_row(engine: Engine) -> dict[str, Any]:
    """The order's read-model row, column by column, as the database holds it."""
    table = OrderRecord.__table__  # type: ignore[attr-defined]
    with engine.connect() as connection:
        row = connection.execute(table.select().where(table.c.order_id == "o-1")).one()
    return {name: _utc(value) for name, value in row._mapping.items()}


def stored(engine: Engine) -> tuple[OrderRecord, list[int], list[str]]:
    with Session(engine) as session:
        row = session.get(OrderRecord, "o-1")
        assert row is not None
        seqs = session.exec(
            select(OrderEvent.seq).where(OrderEvent.order_id == "o-1").order_by(col(OrderEvent.seq))
        ).all()
        shipment_events = session.exec(select(ShipmentEvent.event_id)).all()
        return row, list(seqs), sorted(shipment_events)


def shipment_statuses(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {s.tracking_number: s.status for s in session.exec(select(Shipment))}


def sent_emails(engine: Engine) -> dict[str, datetime | None]:
    with Session(engine) as session:
        return {row.idempotency_key: row.sent_at for row in session.exec(select(SentEmail))}


def test_the_projection_fills_every_column_of_the_row() -> None:
    values = order_record_values(snapshot(4).order, 4)
    assert set(values) == set(OrderRecord.__table__.columns.keys())  # type: ignore[attr-defined]
    assert values["tracking_numbers"] == ["OMTRACK1", "OMTRACK2"]


def test_the_row_is_the_snapshot_in_every_column(engine: Engine) -> None:
    placed = snapshot(1).order
    with Session(engine) as session:
        session.add(placed_order_record(placed))  # as POST /orders writes it
        session.commit()
    assert stored_row(engine) == order_record_values(placed, 0)

    latest = snapshot(4).order.model_copy(
        update={
            "placed_by": "shop-frontend",
            "reason": Problem(code="late", detail="running late"),
            "payment": PaymentSummary(authorization_id="auth_1", authorized=3997, captured=1899),
        }
    )
    record(read_model(engine), RecordOrderInput(order=latest, version=4))
    assert stored_row(engine) == order_record_values(latest, 4)


def test_text_the_database_refuses_is_final_and_recorded_scrubbed(engine: Engine) -> None:
    """A NUL (from a cancel reason, say) is no outage to retry: on PostgreSQL the record fails
    for good, so the workflow holds the order, and the scrubbed retry records a placeholder."""
    activities = read_model(engine)
    order = snapshot(1).order
    cancel = TimelineEntry(at=T0, event="cancel_requested", status=order.status, detail="a\x00b")
    order.timeline.append(cancel)
    if engine.dialect.name == "postgresql":
        with pytest.raises(ApplicationError) as refused:
            record(activities, RecordOrderInput(order=order, version=2))
        assert refused.value.type == DATA_REJECTED and refused.value.non_retryable
        with Session(engine) as session:  # nothing of the refused record was kept
            assert session.get(OrderRecord, order.order_id) is None
    else:
        record(activities, RecordOrderInput(order=order, version=2))  # SQLite keeps any text
    record(activities, RecordOrderInput(order=order, version=3, scrub=True))

    row, _, _ = stored(engine)
    with Session(engine) as session:
        details = session.exec(select(OrderEvent.detail).where(OrderEvent.order_id == "o-1")).all()
    kept = "a\ufffdb" if engine.dialect.name == "postgresql" else "a\x00b"  # the first kept
    assert row.version == 3 and kept in details


def test_an_older_snapshot_arriving_late_does_not_overwrite_a_newer(engine: Engine) -> None:
    activities = read_model(engine)
    record(activities, snapshot(1))
    record(activities, snapshot(3))
    record(activities, snapshot(2))  # late

    row, seqs, _ = stored(engine)
    assert (row.status, row.version) == ("fulfilling", 3)
    assert OrderView.model_validate_json(row.view_json).status is OrderStatus.FULFILLING
    assert seqs == [0, 1, 2]  # the timeline is neither duplicated nor rewound

    record(activities, snapshot(3))  # a retried write changes nothing
    assert stored(engine)[1] == [0, 1, 2]
    assert stored_row(engine) == order_record_values(snapshot(3).order, 3)


def test_every_parcels_status_and_events_are_recorded_once(engine: Engine) -> None:
    book(engine, "OMTRACK1", "OMTRACK2", "OMEXCH1")
    activities = read_model(engine)
    record(activities, snapshot(4, events=2))
    later = snapshot(5, events=3)
    exchange = ShipmentView(
        shipment_id="SHP-X1",
        carrier="simulated-carrier",
        tracking_number="OMEXCH1",
        status=CarrierStatus.OUT_FOR_DELIVERY,
        events=[
            CarrierEvent(
                event_id="x-evt-0",
                tracking_number="OMEXCH1",
                status=CarrierStatus.OUT_FOR_DELIVERY,
                occurred_at=T0,
            )
        ],
    )
    later.order.returns = [
        ReturnView(
            return_id="RET-1",
            lines=[ShipmentLine(sku="BOOK-DUNE", quantity=1)],
            reason=ReturnReason.DAMAGED,
            resolution=ReturnResolution.EXCHANGE,
            status=ReturnStatus.EXCHANGE_SHIPPED,
            requested_at=T0,
            exchange_shipment=exchange,
        )
    ]
    record(activities, later)
    record(activities, later)  # a retry

    row, seqs, shipment_events = stored(engine)
    assert (row.status, row.version, row.tracking_numbers, row.total) == (
        "shipped",
        5,
        ["OMTRACK1", "OMTRACK2"],
        3997,
    )
    assert seqs == [0, 1, 2, 3, 4]
    assert shipment_events == sorted(
        [f"OMTRACK{p}-evt-{n}" for p in (1, 2) for n in range(3)] + ["x-evt-0"]
    )
    assert shipment_statuses(engine) == {
        "OMTRACK1": "in_transit",
        "OMTRACK2": "in_transit",
        "OMEXCH1": "out_for_delivery",
    }


def test_a_late_older_snapshot_does_not_rewind_a_parcels_status(engine: Engine) -> None:
    book(engine, "OMTRACK1", "OMTRACK2")
    activities = read_model(engine)
    newer = snapshot(6, events=2)
    newer.order.shipments[0].status = CarrierStatus.DELIVERED
    record(activities, newer)
    record(activities, snapshot(5, events=1))  # late: parcel 1 still in transit in it

    assert shipment_statuses(engine) == {"OMTRACK1": "delivered", "OMTRACK2": "in_transit"}
    assert stored(engine)[0].version == 6


def test_the_email_is_recorded_with_the_change_and_sent_once(engine: Engine) -> None:
    notifier = CountingNotifier()
    activities = read_model(engine, notifier)
    shipped = snapshot(4, email=order_email(EmailKind.SHIPPED, "SHP-2"))
    record(activities, shipped)
    record(activities, shipped)  # a retry after the send was marked: not sent again

    assert notifier.keys() == ["o-1:shipped:SHP-2"]
    message = notifier.sent[0]
    assert message["To"] == "ada@example.com"
    assert "OMTRACK2" in message.get_content() and "OMTRACK1" not in message.get_content()
    assert sent_emails(engine)["o-1:shipped:SHP-2"] is not None


def test_a_crash_between_send_and_mark_sends_again_with_the_same_message_id(
    engine: Engine,
) -> None:
    notifier = CountingNotifier()
    activities = read_model(engine, notifier)
    confirmed = snapshot(2, email=order_email(EmailKind.CONFIRMATION))
    record(activities, confirmed)
    # The worker died after the send and before its mark; its lease then ran out.
    with Session(engine) as session:
        session.exec(update(SentEmail).values(sent_at=None))
        session.commit()
    record(activities, confirmed)  # within the lease: nobody sends it again yet
    assert notifier.keys() == ["o-1:confirmation"]
    lease_passed(engine)
    record(activities, confirmed)
    record(activities, confirmed)

    assert notifier.keys() == ["o-1:confirmation", "o-1:confirmation"]  # at least once
    first, again = notifier.sent
    assert first["Message-ID"] == again["Message-ID"]  # so the mail server can tell
    assert stored(engine)[0].version == 2


def test_a_mail_server_that_is_down_never_fails_the_record(engine: Engine) -> None:
    notifier = CountingNotifier(failures=1)
    activities = read_model(engine, notifier)
    confirmed = snapshot(2, email=order_email(EmailKind.CONFIRMATION))
    record(activities, confirmed)  # the order goes on: its email waits in the outbox
    assert stored(engine)[0].version == 2
    assert sent_emails(engine) == {"o-1:confirmation": None}  # recorded, not sent

    assert due_keys(engine) == []  # backing off
    lease_passed(engine)
    assert due_keys(engine) == ["o-1:confirmation"]
    assert deliver(engine, notifier.send, "o-1:confirmation") is Delivery.SENT
    assert notifier.keys() == ["o-1:confirmation"]
    assert sent_emails(engine)["o-1:confirmation"] is not None


def test_the_email_of_a_snapshot_that_arrives_late_is_still_sent(engine: Engine) -> None:
    notifier = CountingNotifier()
    activities = read_model(engine, notifier)
    record(activities, snapshot(4, email=order_email(EmailKind.SHIPPED, "SHP-1")))
    record(activities, snapshot(2, email=order_email(EmailKind.CONFIRMATION)))

    assert notifier.keys() == ["o-1:shipped:SHP-1", "o-1:confirmation"]
    assert stored(engine)[0].version == 4


def test_the_digital_delivery_email_lists_the_download_links(engine: Engine) -> None:
    notifier = CountingNotifier()
    request = snapshot(2, email=order_email(EmailKind.DIGITAL_DELIVERY))
    request.order.lines = [
        *LINES,
        OrderLine(sku="EBOOK-DUNE", name="Dune (e-book)", quantity=1, unit_price=999, digital=True),
    ]
    record(read_model(engine, notifier), request)

    body = notifier.sent[0].get_content()
    links = DownloadLinks("https://shop.example", "test-secret", ttl=timedelta(days=30))
    assert links.url("o-1", "EBOOK-DUNE", issued_at=request.order.updated_at) in body
    assert body.count("/downloads/") == 1  # none for the paperbacks


def distinct_snapshot(version: int) -> RecordOrderInput:
    """A snapshot that differs from every other version in every column but the key, so a row
    that mixed two would show it; each with an email of its own."""
    request = snapshot(version, events=version % 3)
    order = request.order.model_copy(
        update={
            "customer_id": f"cus_{version}",
            "placed_by": f"client-{version}",
            "status": list(OrderStatus)[version % len(OrderStatus)],
            "reason": Problem(code=f"code-{version}", detail="-"),
            "totals": Totals(
                currency=f"C{version:02d}", subtotal=version, shipping=0, total=100 + version
            ),
            "payment": PaymentSummary(captured=10 * version, refunded=version),
            "shipments": [
                ShipmentView(shipment_id=f"SHP-{n}", tracking_number=f"OMT{version}-{n}")
                for n in range(1 + version % 2)
            ],
            "placed_at": T0 + timedelta(seconds=version),
        }
    )
    email = OrderEmail(
        idempotency_key=f"o-1:confirmation:{version}",
        kind=EmailKind.CONFIRMATION,
        to="ada@example.com",
        customer_name="Ada Lovelace",
    )
    return RecordOrderInput(order=order, version=version, email=email)


def test_concurrent_records_leave_the_highest_version_whole(engine: Engine) -> None:
    versions = list(range(1, 31))
    random.Random(7).shuffle(versions)
    requests = [distinct_snapshot(v) for v in versions]
    notifier = CountingNotifier()
    activities = read_model(engine, notifier)
    start = threading.Barrier(len(requests))

    def attempt(request: RecordOrderInput) -> None:
        start.wait()
        record(activities, request)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        list(pool.map(attempt, requests))

    highest = max(requests, key=lambda r: r.version)
    assert stored_row(engine) == order_record_values(highest.order, highest.version)
    assert stored(engine)[1] == list(range(30))  # every timeline entry, once
    assert sorted(notifier.keys()) == sorted(f"o-1:confirmation:{v}" for v in versions)
    assert all(sent_at is not None for sent_at in sent_emails(engine).values())


def hold(hold_id: str, code: HoldCode, *, resolved: bool = False) -> HoldView:
    placed_at = T0 + timedelta(minutes=len(hold_id))
    return HoldView(
        hold_id=hold_id,
        code=code,
        detail="test",
        placed_at=placed_at,
        resolved_at=placed_at + timedelta(hours=1) if resolved else None,
        resolution=HoldResolution.RELEASED if resolved else None,
    )


def held(version: int, *holds: HoldView) -> RecordOrderInput:
    request = snapshot(version)
    order = request.order.model_copy(update={"holds": list(holds)})
    return request.model_copy(update={"order": order})


def stored_holds(engine: Engine) -> dict[str, tuple[str, datetime, datetime | None]]:
    with Session(engine) as session:
        rows = session.exec(select(OrderHold).where(OrderHold.order_id == "o-1")).all()
        return {row.hold_id: (row.code, _utc(row.placed_at), _utc(row.resolved_at)) for row in rows}


REVIEW = hold("risk_review", HoldCode.RISK_REVIEW)
BACKORDER = hold("backorder", HoldCode.BACKORDER)
CAPTURE = hold("capture_declined", HoldCode.CAPTURE_DECLINED)
CAPTURE_2 = hold("capture_declined-2", HoldCode.CAPTURE_DECLINED)


def test_the_holds_are_recorded_with_the_codes_of_the_open_ones(engine: Engine) -> None:
    record(read_model(engine), held(1, REVIEW, CAPTURE, CAPTURE_2, BACKORDER))
    row, _, _ = stored(engine)
    assert row.open_holds == ["backorder", "capture_declined", "risk_review"]
    assert stored_holds(engine) == {
        h.hold_id: (h.code.value, h.placed_at, None)
        for h in (REVIEW, CAPTURE, CAPTURE_2, BACKORDER)
    }


def test_a_resolved_hold_leaves_the_open_holds_and_gets_its_resolved_at(engine: Engine) -> None:
    activities = read_model(engine)
    record(activities, held(1, REVIEW, BACKORDER))
    released = hold("risk_review", HoldCode.RISK_REVIEW, resolved=True)
    record(activities, held(2, released, BACKORDER))

    assert stored(engine)[0].open_holds == ["backorder"]
    assert stored_holds(engine) == {
        "risk_review": ("risk_review", released.placed_at, released.resolved_at),
        "backorder": ("backorder", BACKORDER.placed_at, None),
    }


def test_an_older_snapshot_arriving_late_does_not_reopen_a_hold(engine: Engine) -> None:
    activities = read_model(engine)
    released = hold("risk_review", HoldCode.RISK_REVIEW, resolved=True)
    record(activities, held(3, released))
    record(activities, held(2, REVIEW, BACKORDER))  # late: the hold still open, another placed

    row, _, _ = stored(engine)
    assert (row.version, row.open_holds) == (3, [])
    assert stored_holds(engine) == {
        "risk_review": ("risk_review", released.placed_at, released.resolved_at)
    }


def test_an_order_without_holds_writes_no_hold_rows(engine: Engine) -> None:
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement.lower())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        record(read_model(engine), snapshot(1))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements and not [s for s in statements if "orderhold" in s]
    assert stored(engine)[0].open_holds == []
