"""ordermill's own database: catalog, customers, stock, payments, shipments, emails, read model.

The order workflow is the source of truth for an order; these tables hold what outside
systems (the warehouse, the card processor, the carrier) would hold, plus a read model that
answers list queries and keeps closed orders readable.
"""

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Column, DateTime, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Product(SQLModel, table=True):
    sku: str = Field(primary_key=True, max_length=64)
    name: str
    price: int = Field(description="Unit price in minor units", sa_type=BigInteger)
    currency: str = "USD"
    digital: bool = False
    # Orders may wait for it when it is short (the backorder queue) instead of being refused.
    backorderable: bool = False


class Warehouse(SQLModel, table=True):
    """A place stock is kept and parcels leave from; `rank` breaks allocation ties."""

    code: str = Field(primary_key=True, max_length=32)
    name: str
    rank: int = Field(unique=True)


class Stock(SQLModel, table=True):
    """One product's units in one warehouse: on hand, and how many running orders hold."""

    sku: str = Field(primary_key=True, foreign_key="product.sku")
    warehouse: str = Field(primary_key=True, foreign_key="warehouse.code")
    on_hand: int = 0
    reserved: int = 0
    # The opening balance: units put on the shelf when the row was created (seeded), before any
    # receipt, commit or restock; the reconciliation counts from it.
    seeded: int = 0


class Customer(SQLModel, table=True):
    """Who an order is for. `owner` is the API client that created it and may order for it;
    none means shared: the demo customers, usable by every client in development only."""

    id: str = Field(primary_key=True, max_length=64)
    owner: str | None = Field(default=None, index=True, max_length=64)
    name: str
    email: str
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None
    blocked: bool = False
    # Every order for this customer waits for an operator's risk review.
    review_required: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class StockReservation(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("order_id", "sku", "warehouse"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True)
    sku: str = Field(foreign_key="product.sku")
    warehouse: str = Field(foreign_key="warehouse.code")
    quantity: int
    status: str = Field(default="held", description="held, committed or released")
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class PaymentTransaction(SQLModel, table=True):
    """The simulated card processor's ledger: one row per authorize, capture, void or refund."""

    id: str = Field(primary_key=True)
    idempotency_key: str = Field(unique=True)
    order_id: str = Field(index=True)
    kind: str = Field(description="authorize, capture, void or refund")
    status: str = Field(description="approved or declined")
    amount: int = Field(sa_type=BigInteger)
    currency: str = "USD"
    authorization_id: str | None = Field(default=None, index=True)
    token: str | None = Field(default=None, description="Card token; never a card number")
    shipment_id: str | None = Field(default=None, description="The parcel a capture pays for")
    reason: str | None = None
    # An authorization lapses then: captures and voids of it are refused.
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Shipment(SQLModel, table=True):
    tracking_number: str = Field(primary_key=True)
    idempotency_key: str = Field(unique=True)
    order_id: str = Field(index=True)
    carrier: str
    service: str
    status: str = "booked"
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class ShipmentEvent(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("tracking_number", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tracking_number: str = Field(index=True)
    event_id: str
    status: str
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))
    description: str | None = None


class SentEmail(SQLModel, table=True):
    """The email outbox: one row per email, recorded with the change that triggers it (the
    composed message with it), `sent_at` once sent (activities.outbox)."""

    idempotency_key: str = Field(primary_key=True)
    order_id: str = Field(index=True)
    kind: str
    recipient: str
    message_id: str
    message: str | None = Field(default=None, sa_type=Text)  # RFC 5322, as it goes out
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    sent_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    attempts: int = 0
    # Not before then: a sender's lease while it sends, the backoff after a failed attempt.
    next_attempt_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    refused: str | None = None  # the mail server refused it for good: never sent again


class OrderRecord(SQLModel, table=True):
    """Read model: one row per order, the latest snapshot the workflow recorded."""

    order_id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    placed_by: str | None = Field(default=None, index=True)  # the API principal that owns it
    status: str = Field(index=True)
    reason_code: str | None = None
    currency: str = "USD"
    total: int | None = Field(default=None, sa_type=BigInteger)
    captured: int = Field(default=0, sa_type=BigInteger)
    refunded: int = Field(default=0, sa_type=BigInteger)
    tracking_numbers: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, default=list)
    )
    open_holds: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, default=list)
    )
    version: int = 0
    placed_at: datetime = Field(index=True, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(sa_type=DateTime(timezone=True))
    view_json: str = Field(sa_column=Column(Text, nullable=False))


class OrderEvent(SQLModel, table=True):
    """Read model: the order's timeline, one row per entry."""

    __table_args__ = (UniqueConstraint("order_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True)
    seq: int
    at: datetime = Field(sa_type=DateTime(timezone=True))
    event: str
    status: str
    detail: str = ""


class OrderHold(SQLModel, table=True):
    """Read model: the order's holds, one row each, so a review queue is an indexed query."""

    order_id: str = Field(primary_key=True)
    hold_id: str = Field(primary_key=True, max_length=64)
    code: str = Field(index=True)
    placed_at: datetime = Field(index=True, sa_type=DateTime(timezone=True))
    resolved_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class IdempotencyKey(SQLModel, table=True):
    """An `Idempotency-Key` a client sent, and the order its request concerns.

    Keys are each owner's own (the API principal's name): one client can neither claim nor
    replay another's. The primary key is the serialization point: of two requests racing with
    one key, one inserts and the other reads the winner's row. Rows are honoured for
    IDEMPOTENCY_KEY_TTL and then purged by the API (api.idempotency).
    """

    owner: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(description="SHA-256 of the request: its operation and body")
    order_id: str = Field(description="The order placed, or the order the request acts on")
    created_at: datetime = Field(
        default_factory=utcnow, index=True, sa_type=DateTime(timezone=True)
    )


class CarrierWebhookReceipt(SQLModel, table=True):
    """One row per carrier tracking event received, so a redelivered event changes nothing.

    An event is the carrier's, for one tracking number: two carriers (or two parcels) may use
    the same `event_id` for different events.
    """

    carrier: str = Field(primary_key=True, max_length=100)
    tracking_number: str = Field(primary_key=True, max_length=100)
    event_id: str = Field(primary_key=True, max_length=200)
    order_id: str = Field(index=True)
    status: str
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))
    outcome: str = Field(description="pending, signalled or order_closed")
    received_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Restock(SQLModel, table=True):
    """Returned units put back on the shelf, once per return, SKU and warehouse."""

    __table_args__ = (UniqueConstraint("order_id", "return_id", "sku", "warehouse"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True)
    return_id: str
    sku: str = Field(foreign_key="product.sku")
    warehouse: str = Field(foreign_key="warehouse.code")
    quantity: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class RevokedDownload(SQLModel, table=True):
    """Download links that no longer work (the digital line was refunded)."""

    order_id: str = Field(primary_key=True)
    sku: str = Field(primary_key=True)
    revoked_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Backorder(SQLModel, table=True):
    """An order waiting in the backorder queue: served whole, in the order orders were placed.

    `wanted` is its physical units per SKU; its stock is held (StockReservation rows) only
    once a receipt fills it.
    """

    order_id: str = Field(primary_key=True)
    placed_at: datetime = Field(index=True, sa_type=DateTime(timezone=True))
    wanted: dict[str, int] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="waiting", index=True, description="waiting, filled or left")
    receipt_id: str | None = Field(default=None, description="The receipt that filled it")
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class StockReceipt(SQLModel, table=True):
    """The stock-receipt ledger: units that arrived, once per receipt, and whom they served."""

    receipt_id: str = Field(primary_key=True, max_length=200)
    sku: str = Field(foreign_key="product.sku")
    warehouse: str = Field(foreign_key="warehouse.code")
    quantity: int
    received_by: str | None = None
    filled: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, default=list)
    )
    received_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class ReconciliationRun(SQLModel, table=True):
    """One run of the nightly reconciliation: what it checked, and how many discrepancies of
    each kind it found (its first rows are in `reconciliationdiscrepancy`)."""

    run_id: str = Field(primary_key=True, max_length=64)
    workflow_id: str
    status: str = Field(default="running", index=True, description="running or finished")
    started_at: datetime = Field(index=True, sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    checked: dict[str, int] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict)
    )
    found: dict[str, int] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict)
    )


class ReconciliationDiscrepancy(SQLModel, table=True):
    """One discrepancy a run found; a retried batch finds it again and the key keeps one."""

    __table_args__ = (UniqueConstraint("run_id", "kind", "subject"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=64)
    subject: str = Field(max_length=300)
    detail: str = Field(sa_type=Text)
