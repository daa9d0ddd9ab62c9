"""The order read model: what list queries and closed orders are answered from.

The workflow records a numbered snapshot on every change, and a record never goes backwards:
the order's row is replaced whole, in one statement, and only by a higher version, so two
records racing each other leave the newer snapshot and never a row mixing the two. Timeline
rows and carrier events are facts that older snapshots hold too: they are inserted, or ignored
when already there. The order's holds (one row each, for the operators' queues) are written
from the newest snapshot only, as the row is, and only for an order that has any. The email
a change triggers is recorded in the change's transaction and sent by the worker's EmailSender
once it has committed.
"""

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel
from temporalio import activity

from activities.email_sender import EmailSender, outbox_row
from activities.errors import refused_data_is_final
from activities.notifications import Mailer
from models.activities import RecordOrderInput
from models.orders import OrderView
from models.projection import (
    hold_rows,
    order_record_values,
    shipment_event_row,
    timeline_rows,
    tracked_shipments,
)
from models.tables import (
    OrderEvent,
    OrderHold,
    OrderRecord,
    SentEmail,
    Shipment,
    ShipmentEvent,
    utcnow,
)


def _table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined]


# Written with SQLAlchemy Core, not the ORM: a record runs on every change of every order, and
# the ORM's bulk statements evaluate each WHERE against a session that holds no objects.
ORDERS = _table(OrderRecord)
EVENTS = _table(OrderEvent)
HOLDS = _table(OrderHold)
SHIPMENTS = _table(Shipment)


class ReadModelActivities:
    def __init__(self, engine: Engine, mailer: Mailer, sender: EmailSender) -> None:
        self._engine = engine
        self._mailer = mailer
        self._sender = sender

    @activity.defn(name="record_order")
    def record_order(self, request: RecordOrderInput) -> None:
        """Record the snapshot with the email the change triggers, if any, which the worker's
        EmailSender then sends: the order never waits for the mail server."""
        order = scrubbed(request.order) if request.scrub else request.order
        # Composed before anything is written: an email that cannot be composed is never kept.
        message = self._mailer.order_email(request.email, order) if request.email else None
        with refused_data_is_final(), self._engine.begin() as conn:
            newest = _replace_row(conn, order, request.version)
            _add_timeline(conn, order)
            _record_shipments(conn, order, newest=newest)
            if newest and order.holds:  # an order without holds costs no statement here
                _record_holds(conn, order)
            if message is not None:
                # A retried record keeps the first composition: the same email every time.
                _insert_ignoring(conn, SentEmail, [outbox_row(message)], ["idempotency_key"])
        if message is not None:
            self._sender.notify(str(message["X-Ordermill-Key"]))


# Control characters other than tab and newline: what PostgreSQL's text refuses (NUL) and
# what no reader of an order wants.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
PLACEHOLDER = "\ufffd"


def scrubbed(order: OrderView) -> OrderView:
    """The order with every control character in its text replaced by a placeholder."""

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return _CONTROL.sub(PLACEHOLDER, value)
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        return value

    return OrderView.model_validate(scrub(order.model_dump(mode="json")))


def _replace_row(conn: Connection, order: OrderView, version: int) -> bool:
    """Make `version` the order's row unless a newer one is there; whether it now is.

    The UPDATE carries every column, so it replaces one whole snapshot with another. A first
    record INSERTs, and if another first record got in between, UPDATEs that one instead.
    """
    values = order_record_values(order, version)
    replace = (
        update(ORDERS)
        .where(ORDERS.c.order_id == order.order_id, ORDERS.c.version < version)
        .values({name: value for name, value in values.items() if name != "order_id"})
    )
    if conn.execute(replace).rowcount:
        return True
    if _insert_ignoring(conn, OrderRecord, [values], ["order_id"]):
        return True
    return bool(conn.execute(replace).rowcount)


def _add_timeline(conn: Connection, order: OrderView) -> None:
    recorded = conn.execute(
        select(func.count()).select_from(EVENTS).where(EVENTS.c.order_id == order.order_id)
    ).scalar_one()
    _insert_ignoring(conn, OrderEvent, timeline_rows(order, recorded), ["order_id", "seq"])


def _record_shipments(conn: Connection, order: OrderView, *, newest: bool) -> None:
    """The carrier's events for each parcel; its status only from the newest snapshot, which
    an older one arriving late must not rewind."""
    shipments = tracked_shipments(order)
    if newest:
        for shipment in shipments:
            if shipment.status is None:
                continue
            conn.execute(
                update(SHIPMENTS)
                .where(
                    SHIPMENTS.c.tracking_number == shipment.tracking_number,
                    SHIPMENTS.c.status != shipment.status.value,
                )
                .values(status=shipment.status.value, updated_at=utcnow())
            )
    events = [shipment_event_row(event) for shipment in shipments for event in shipment.events]
    _insert_ignoring(conn, ShipmentEvent, events, ["tracking_number", "event_id"])


def _record_holds(conn: Connection, order: OrderView) -> None:
    """One row per hold, for the operators' queues, as the newest snapshot has it: a decided
    hold gets its `resolved_at`. One statement, however many holds."""
    statement = _dialect_insert(conn, HOLDS)
    columns = ("code", "placed_at", "resolved_at")
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["order_id", "hold_id"],
            set_={name: statement.excluded[name] for name in columns},
        ),
        [row.model_dump() for row in hold_rows(order)],
    )


def _insert_ignoring(
    conn: Connection,
    model: type[SQLModel],
    rows: Sequence[SQLModel | dict[str, Any]],
    unique: list[str],
) -> int:
    """Insert `rows` of `model`'s table in one statement, skipping those whose `unique` columns
    are taken (ON CONFLICT DO NOTHING, in ordermill's two dialects); how many went in.

    Counted from RETURNING: psycopg reports no rowcount for an INSERT built this way. The rows
    go as parameters, not in the statement, so its compiled form is cached whatever their number.
    """
    if not rows:
        return 0
    values = [row if isinstance(row, dict) else row.model_dump(exclude={"id"}) for row in rows]
    table = _table(model)
    statement = (
        _dialect_insert(conn, table)
        .on_conflict_do_nothing(index_elements=unique)
        .returning(*table.primary_key.columns)
    )
    return len(conn.execute(statement, values).all())


def _dialect_insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that takes ON CONFLICT clauses, in ordermill's two dialects."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no ON CONFLICT insert for {dialect}")
