"""The order as clients, the workflow and operators see it.

Money is always integer minor units (cents) beside a currency code; prices come from the
catalog, never from the client.
"""

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, computed_field

from models.holds import HoldView
from models.shipments import (
    ShipmentLine,
    ShipmentView,
)
from models.text import ONE_LINE, CardToken, CountryCode, LongText, ShortText, Sku, Text

CURRENCY = "USD"
MAX_LINES = 100
MAX_QUANTITY = 1000


class OrderStatus(StrEnum):
    RECEIVED = "received"
    REJECTED = "rejected"
    CONFIRMED = "confirmed"
    PAYMENT_DECLINED = "payment_declined"
    FULFILLING = "fulfilling"
    PARTIALLY_SHIPPED = "partially_shipped"  # some parcels are with the carrier, not all
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    PARTIALLY_DELIVERED = "partially_delivered"  # some parcels arrived, the rest failed
    DELIVERY_FAILED = "delivery_failed"
    CANCELLED = "cancelled"
    PARTIALLY_RETURNED = "partially_returned"
    RETURNED = "returned"
    COMPLETED = "completed"
    # Waiting for an operator's decision before anything more is sent (see HoldView).
    ON_HOLD = "on_hold"
    # Authorized and waiting for stock to arrive (a `backorder` hold); nothing is sent yet.
    BACKORDERED = "backordered"


# Statuses after which nothing more happens to the order.
FINAL_STATUSES = frozenset(
    {
        OrderStatus.REJECTED,
        OrderStatus.PAYMENT_DECLINED,
        OrderStatus.CANCELLED,
        OrderStatus.DELIVERY_FAILED,
        OrderStatus.COMPLETED,
    }
)
# Statuses in which the order is in the customer's hands and customer service applies.
AFTER_DELIVERY_STATUSES = frozenset(
    {
        OrderStatus.DELIVERED,
        OrderStatus.PARTIALLY_DELIVERED,
        OrderStatus.PARTIALLY_RETURNED,
        OrderStatus.RETURNED,
    }
)
# Statuses in which money has been taken and may be refunded.
CAPTURED_STATUSES = AFTER_DELIVERY_STATUSES | {OrderStatus.PARTIALLY_SHIPPED, OrderStatus.SHIPPED}
# Statuses in which the customer may still cancel: nothing has left the warehouse.
CANCELLABLE_STATUSES = frozenset(
    {
        OrderStatus.RECEIVED,
        OrderStatus.CONFIRMED,
        OrderStatus.FULFILLING,
        OrderStatus.ON_HOLD,
        OrderStatus.BACKORDERED,
    }
)


class DeliveryOption(StrEnum):
    STANDARD = "standard"
    EXPRESS = "express"


SHIPPING_FEES = {DeliveryOption.STANDARD: 499, DeliveryOption.EXPRESS: 1499}


class Address(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Ada Lovelace",
                    "line1": "12 Analytical Way",
                    "city": "Springfield",
                    "postal_code": "62701",
                    "country": "US",
                }
            ]
        }
    )

    name: Text
    line1: Text
    line2: ShortText | None = None
    city: Text
    postal_code: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=20, pattern=ONE_LINE),
    ]
    country: CountryCode


class OrderItem(BaseModel):
    sku: Sku
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class PaymentMethod(BaseModel):
    token: CardToken


class OrderTimeouts(BaseModel):
    """How long the order waits; chosen by whoever starts it (from settings)."""

    delivery_timeout: timedelta = timedelta(days=14)
    return_window: timedelta = timedelta(days=30)
    return_arrival_timeout: timedelta = timedelta(days=30)
    # An operator's risk review not decided by then cancels the order (`review_timeout`).
    review_timeout: timedelta = timedelta(days=3)
    # Stock that has not arrived by then cancels the order (`backorder_timeout`).
    backorder_timeout: timedelta = timedelta(days=30)
    # How long before the card authorization expires a waiting order renews it.
    auth_renew_margin: timedelta = timedelta(days=1)


class OrderLimits(BaseModel):
    """How much customer service one order takes; chosen by whoever starts it (settings)."""

    max_inquiries: int = 20
    # An order of at least this total (minor units) waits for an operator's risk review.
    risk_review_threshold: int = 50000


class PlaceOrderInput(BaseModel):
    """The order workflow's one input."""

    order_id: str
    customer_id: str
    items: list[OrderItem] = Field(min_length=1, max_length=MAX_LINES)
    shipping_address: Address | None = None
    delivery: DeliveryOption = DeliveryOption.STANDARD
    payment: PaymentMethod
    placed_at: datetime
    timeouts: OrderTimeouts = OrderTimeouts()
    limits: OrderLimits = OrderLimits()
    # The API principal that placed the order: its owner. None on orders placed before keys.
    placed_by: str | None = None


class OrderLine(BaseModel):
    """One priced line, as the catalog priced it when stock was reserved."""

    sku: str
    name: str
    quantity: int
    unit_price: int
    digital: bool

    @computed_field  # type: ignore[prop-decorator]
    @property
    def line_total(self) -> int:
        return self.unit_price * self.quantity


class Totals(BaseModel):
    currency: str = CURRENCY
    subtotal: int
    shipping: int
    total: int


class AuthorizationStatus(StrEnum):
    LIVE = "live"  # holds the customer's funds; captures are charged to it
    VOIDED = "voided"  # given back: cancelled, replaced by a renewal, or its rest released
    EXPIRED = "expired"  # lapsed at the processor before it was captured or voided
    CAPTURED = "captured"  # everything it held was captured


class AuthorizationView(BaseModel):
    """One card authorization. A waiting order renews it before it expires: a new one, then a
    void of the old, so at most one is live for longer than the renewal takes."""

    authorization_id: str
    amount: int
    authorized_at: datetime
    expires_at: datetime | None = Field(default=None, description="As the processor set it")
    status: AuthorizationStatus = AuthorizationStatus.LIVE


class CaptureView(BaseModel):
    """One capture: a parcel's share, taken at hand-over from the live authorization."""

    capture_id: str
    authorization_id: str | None = None
    shipment_id: str | None = None
    amount: int
    at: datetime


class PaymentSummary(BaseModel):
    authorization_id: str | None = Field(default=None, description="The live authorization")
    authorized: int = 0
    captured: int = 0
    refunded: int = 0
    # What was given back of the authorization uncaptured: all of it on a cancel (`voided`),
    # the remainder once every parcel is handed over.
    released: int = 0
    voided: bool = False
    # Captures an operator gave up on (a declined capture's hold, rejected): never collected.
    written_off: int = 0
    authorizations: list[AuthorizationView] = []
    captures: list[CaptureView] = []


class Problem(BaseModel):
    """Why an order stopped: a machine-readable code and words for people."""

    code: str
    detail: str


class TimelineEntry(BaseModel):
    at: datetime
    event: str
    status: OrderStatus
    detail: str = ""


class ReturnReason(StrEnum):
    DAMAGED = "damaged"
    WRONG_ITEM = "wrong_item"
    NOT_AS_DESCRIBED = "not_as_described"
    CHANGED_MIND = "changed_mind"
    OTHER = "other"


class ReturnResolution(StrEnum):
    REFUND = "refund"
    EXCHANGE = "exchange"


class ReturnStatus(StrEnum):
    AWAITING_PARCEL = "awaiting_parcel"  # return label issued, parcel on its way back
    RECEIVED = "received"  # parcel back in the warehouse, being resolved
    REFUNDED = "refunded"
    EXCHANGE_SHIPPED = "exchange_shipped"
    EXCHANGE_DELIVERED = "exchange_delivered"
    NOT_RECEIVED = "not_received"  # the parcel never came back: closed without a refund


# Returns whose outcome is still open; the order does not complete while one is.
OPEN_RETURN_STATUSES = frozenset(
    {ReturnStatus.AWAITING_PARCEL, ReturnStatus.RECEIVED, ReturnStatus.EXCHANGE_SHIPPED}
)


class ReturnLine(BaseModel):
    sku: Sku
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class ReturnRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lines": [{"sku": "BOOK-DUNE", "quantity": 1}],
                    "reason": "damaged",
                    "resolution": "refund",
                }
            ]
        }
    )

    lines: list[ReturnLine] = Field(min_length=1, max_length=MAX_LINES)
    reason: ReturnReason
    resolution: ReturnResolution = ReturnResolution.REFUND
    comment: LongText | None = None


class ReturnView(BaseModel):
    return_id: str
    lines: list[ShipmentLine]
    reason: ReturnReason
    resolution: ReturnResolution
    status: ReturnStatus
    digital: bool = False
    requested_at: datetime
    tracking_number: str | None = None  # of the return label
    refund_amount: int = 0
    exchange_shipment: ShipmentView | None = None
    closed_at: datetime | None = None


class RefundKind(StrEnum):
    RETURN = "return"
    GOODWILL = "goodwill"
    DELIVERY_FAILED = "delivery_failed"


class RefundCharge(BaseModel):
    """The part of a refund charged to one authorization's captures."""

    authorization_id: str
    amount: int


class RefundView(BaseModel):
    refund_id: str
    kind: RefundKind
    amount: int
    reason: str
    at: datetime
    return_id: str | None = None
    # The processor refused it and an operator settled it with the customer outside ordermill.
    settled_outside: bool = False
    charges: list[RefundCharge] = []


class GoodwillRefundRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"amount": 500, "reason": "late delivery"}]}
    )

    amount: int = Field(gt=0, description="Minor units (cents)")
    reason: Text


class InquiryRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"message": "Can you gift-wrap my order?"}]}
    )

    message: LongText = Field(min_length=1)


class InquiryView(BaseModel):
    inquiry_id: str
    message: str
    at: datetime


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"rating": 5, "comment": "Arrived quickly."}]}
    )

    rating: int = Field(ge=1, le=5)
    comment: LongText | None = None


class FeedbackView(BaseModel):
    rating: int
    comment: str | None
    at: datetime


class OrderView(BaseModel):
    """Everything about one order: the answer of the `status` query and of GET /orders/{id}."""

    order_id: str
    customer_id: str
    placed_by: str | None = Field(default=None, description="The API client that placed it")
    status: OrderStatus
    reason: Problem | None = None
    items: list[OrderItem]
    lines: list[OrderLine] = []
    delivery: DeliveryOption
    shipping_address: Address | None = None
    totals: Totals | None = None
    payment: PaymentSummary = PaymentSummary()
    shipments: list[ShipmentView] = []
    timeline: list[TimelineEntry] = []
    placed_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None
    return_window_ends_at: datetime | None = None
    returns: list[ReturnView] = []
    refunds: list[RefundView] = []
    inquiries: list[InquiryView] = []
    feedback: FeedbackView | None = None
    holds: list[HoldView] = []
    backordered: list[str] = Field(default=[], description="SKUs the order waits for")


def received_view(order: PlaceOrderInput) -> OrderView:
    """An order as it stands the moment it is placed, before any stage has run."""
    return OrderView(
        order_id=order.order_id,
        customer_id=order.customer_id,
        placed_by=order.placed_by,
        status=OrderStatus.RECEIVED,
        items=order.items,
        delivery=order.delivery,
        shipping_address=order.shipping_address,
        placed_at=order.placed_at,
        updated_at=order.placed_at,
    )


class CancelRequest(BaseModel):
    reason: ShortText = "customer_request"


def tracking_numbers(view: OrderView) -> list[str]:
    """The order's outbound parcels' tracking numbers, in parcel order."""
    return [s.tracking_number for s in view.shipments if s.tracking_number is not None]


def money(amount: int, currency: str = CURRENCY) -> str:
    """`1899` -> `$18.99`, for summaries and emails."""
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"{symbol}{amount / 100:,.2f}"


def order_totals(lines: list[OrderLine], delivery: DeliveryOption) -> Totals:
    """Lines plus the delivery option's fee; an order with nothing to ship ships free."""
    subtotal = sum(line.line_total for line in lines)
    shipping = SHIPPING_FEES[delivery] if any(not line.digital for line in lines) else 0
    return Totals(subtotal=subtotal, shipping=shipping, total=subtotal + shipping)
