"""Inputs and outputs of the order's activities: one model in, one model out."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from models.orders import Address, DeliveryOption, InquiryView, OrderItem, OrderLine, OrderView
from models.shipments import ShipmentLine


class VerifyCustomerInput(BaseModel):
    customer_id: str
    shipping_address: Address | None = None


class VerifiedCustomer(BaseModel):
    customer_id: str
    name: str
    email: str
    shipping_address: Address
    review_required: bool = False  # every order of theirs waits for a risk review


class ReserveStockInput(BaseModel):
    order_id: str
    items: list[OrderItem]
    # An exchange ships in one parcel: refuse rather than split it across warehouses.
    single_warehouse: bool = False
    # A new order may wait in the backorder queue for backorderable SKUs that are short; an
    # exchange may not. `placed_at` is its place in that queue.
    allow_backorder: bool = False
    placed_at: datetime | None = None


class StockAllocation(BaseModel):
    """The units one warehouse holds for an order: one parcel's worth."""

    warehouse: str
    lines: list[ShipmentLine]


class Reservation(BaseModel):
    order_id: str
    lines: list[OrderLine]
    # One per warehouse, in the warehouses' order; digital lines are in none.
    parcels: list[StockAllocation] = []
    # Backorderable SKUs that were short: the order waits in the backorder queue, holding
    # nothing (parcels empty) until a stock receipt serves it whole.
    backordered: list[str] = []


class BackorderFilled(BaseModel):
    """The signal a stock receipt sends an order it served: the units now held for it."""

    receipt_id: str
    parcels: list[StockAllocation]


class ReceiveStockInput(BaseModel):
    """Units arrived at a warehouse (a stock receipt), given to waiting orders in turn."""

    receipt_id: str
    sku: str
    warehouse: str
    add: int
    received_by: str | None = None


class FilledBackorder(BaseModel):
    order_id: str
    parcels: list[StockAllocation]


class StockLevel(BaseModel):
    warehouse: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class StockReceiptResult(BaseModel):
    """What a receipt did: the backorders it filled, oldest first, and the stock after it."""

    receipt_id: str
    sku: str
    warehouse: str
    added: int
    filled: list[FilledBackorder]
    stock: list[StockLevel]


class OrderRef(BaseModel):
    order_id: str


class CommitStockInput(BaseModel):
    """One warehouse's held stock for the order left with its parcel."""

    order_id: str
    warehouse: str


class AuthorizePaymentInput(BaseModel):
    order_id: str
    token: str
    amount: int
    currency: str
    idempotency_key: str


class PaymentAuthorization(BaseModel):
    authorization_id: str
    amount: int
    expires_at: datetime | None = None  # when the processor lets it lapse


class CapturePaymentInput(BaseModel):
    """One of possibly several partial captures against one authorization."""

    order_id: str
    authorization_id: str
    amount: int
    idempotency_key: str
    shipment_id: str | None = None  # the parcel whose hand-over this capture pays for


class VoidPaymentInput(BaseModel):
    """Releases what the authorize call with `authorize_key` produced and nothing captured:
    the whole authorization on a cancel, the remainder once every parcel is handed over."""

    order_id: str
    authorize_key: str
    idempotency_key: str


class RefundPaymentInput(BaseModel):
    order_id: str
    authorization_id: str
    amount: int
    reason: str
    idempotency_key: str


class PaymentResult(BaseModel):
    transaction_id: str | None
    amount: int


class PickPackInput(BaseModel):
    order_id: str
    shipment_id: str
    warehouse: str
    lines: list[ShipmentLine]


class Parcel(BaseModel):
    parcel_id: str
    items: int


class ShipmentDirection(StrEnum):
    OUTBOUND = "outbound"  # from the warehouse to the customer
    RETURN = "return"  # from the customer back to the warehouse


class BookShipmentInput(BaseModel):
    order_id: str
    parcel_id: str
    delivery: DeliveryOption
    address: Address
    idempotency_key: str
    direction: ShipmentDirection = ShipmentDirection.OUTBOUND
    warehouse: str | None = None  # where an outbound parcel leaves from


class BookedShipment(BaseModel):
    carrier: str
    tracking_number: str


# The timeline event of an order's digital delivery: its download links' expiry counts from it.
DIGITAL_DELIVERY_EVENT = "digital_delivery_sent"


class EmailKind(StrEnum):
    CONFIRMATION = "confirmation"
    DIGITAL_DELIVERY = "digital_delivery"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    PARTIALLY_DELIVERED = "partially_delivered"
    PAYMENT_DECLINED = "payment_declined"
    REJECTED = "rejected"
    RETURN_LABEL = "return_label"
    RETURN_REFUNDED = "return_refunded"
    EXCHANGE_SHIPPED = "exchange_shipped"
    RETURN_NOT_RECEIVED = "return_not_received"
    REFUND_ISSUED = "refund_issued"
    CANCELLED = "cancelled"
    DELIVERY_FAILED = "delivery_failed"
    # To the support mailbox, not the customer.
    HOLD_PLACED = "hold_placed"


SUPPORT_EMAILS = frozenset({EmailKind.HOLD_PLACED})


class OrderEmail(BaseModel):
    """One email about one order event; `idempotency_key` makes a retried send a no-op."""

    idempotency_key: str
    kind: EmailKind
    to: str | None  # None: the support mailbox (SUPPORT_EMAILS), which only the worker knows
    customer_name: str
    reference: str | None = None  # the parcel, return or refund the email is about, if any


class SupportInquiryInput(BaseModel):
    """A customer's question, forwarded to the support mailbox with the order's state."""

    idempotency_key: str
    customer_email: str
    inquiry: InquiryView
    order: OrderView


class RestockInput(BaseModel):
    """Units back on the shelf of the warehouse they left, once per order and `return_id`
    (a return, or a parcel the carrier sent back)."""

    order_id: str
    return_id: str
    parcels: list[StockAllocation]


class RevokeDownloadsInput(BaseModel):
    order_id: str
    skus: list[str]


class EmailReceipt(BaseModel):
    message_id: str
    already_sent: bool


class RecordOrderInput(BaseModel):
    """A snapshot of the order for the read model; a lower `version` never overwrites a higher.

    The email the change triggers, if any, is recorded in the same transaction and then sent.
    """

    order: OrderView
    version: int
    email: OrderEmail | None = None
    # After a data_rejected hold was released: replace what the database refused (control
    # characters in free text) with a placeholder instead of refusing again.
    scrub: bool = False
