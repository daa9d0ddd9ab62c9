"""Inputs and outputs of the order's activities: one model in, one model out."""

from enum import StrEnum

from pydantic import BaseModel

from models.orders import (
    Address,
    DeliveryOption,
    InquiryView,
    OrderItem,
    OrderLine,
    OrderView,
    ReturnLine,
)


class VerifyCustomerInput(BaseModel):
    customer_id: str
    shipping_address: Address | None = None


class VerifiedCustomer(BaseModel):
    customer_id: str
    name: str
    email: str
    shipping_address: Address


class ReserveStockInput(BaseModel):
    order_id: str
    items: list[OrderItem]


class Reservation(BaseModel):
    order_id: str
    lines: list[OrderLine]


class OrderRef(BaseModel):
    order_id: str


class AuthorizePaymentInput(BaseModel):
    order_id: str
    token: str
    amount: int
    currency: str
    idempotency_key: str


class PaymentAuthorization(BaseModel):
    authorization_id: str
    amount: int


class CapturePaymentInput(BaseModel):
    order_id: str
    authorization_id: str
    amount: int
    idempotency_key: str


class VoidPaymentInput(BaseModel):
    """Voids whatever the authorize call with `authorize_key` produced, if anything."""

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
    lines: list[OrderLine]


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


class BookedShipment(BaseModel):
    carrier: str
    tracking_number: str


class EmailKind(StrEnum):
    CONFIRMATION = "confirmation"
    DIGITAL_DELIVERY = "digital_delivery"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    PAYMENT_DECLINED = "payment_declined"
    REJECTED = "rejected"
    RETURN_LABEL = "return_label"
    RETURN_REFUNDED = "return_refunded"
    EXCHANGE_SHIPPED = "exchange_shipped"
    RETURN_NOT_RECEIVED = "return_not_received"
    REFUND_ISSUED = "refund_issued"
    CANCELLED = "cancelled"
    DELIVERY_FAILED = "delivery_failed"


class SendEmailInput(BaseModel):
    """One email about one order event; `idempotency_key` makes a retried send a no-op."""

    idempotency_key: str
    kind: EmailKind
    to: str
    customer_name: str
    order: OrderView
    reference: str | None = None  # the return or refund the email is about, if any


class SupportInquiryInput(BaseModel):
    """A customer's question, forwarded to the support mailbox with the order's state."""

    idempotency_key: str
    customer_email: str
    inquiry: InquiryView
    order: OrderView


class RestockInput(BaseModel):
    order_id: str
    return_id: str
    lines: list[ReturnLine]


class RevokeDownloadsInput(BaseModel):
    order_id: str
    skus: list[str]


class EmailReceipt(BaseModel):
    message_id: str
    already_sent: bool


class RecordOrderInput(BaseModel):
    """A snapshot of the order for the read model; a lower `version` never overwrites a higher."""

    order: OrderView
    version: int
