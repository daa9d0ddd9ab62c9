"""Request and response bodies of the HTTP API that are not already order payloads.

The order itself (`OrderView`, `OrderItem`, `Address`, ...) lives in models.orders and is
shared with the workflow; these are the shapes only HTTP clients see.
"""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from models.holds import HoldCode
from models.orders import (
    MAX_LINES,
    MAX_QUANTITY,
    Address,
    DeliveryOption,
    OrderItem,
    OrderStatus,
    PaymentMethod,
)
from models.shipments import CarrierStatus
from models.text import ShortText, Text

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Base64 as protobuf JSON reads bytes (the codec server's payloads): standard or URL-safe
# alphabet, padding optional.
BASE64 = r"^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$"
CustomerId = Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
# Who a customer belongs to: an API principal's name (settings.API_KEYS).
OwnerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@-]{1,64}$")]

ADDRESS_EXAMPLE = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical Way",
    "city": "Springfield",
    "postal_code": "62701",
    "country": "US",
}


class PlaceOrderRequest(BaseModel):
    """What a client sends to place an order. Prices come from the catalog, never from here."""

    # Unknown top-level fields are refused: a misspelt `shiping_address` silently falling back
    # to the address on file would ship a parcel to the wrong place.
    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId
    items: list[OrderItem] = Field(min_length=1, max_length=MAX_LINES)
    shipping_address: Address | None = Field(
        default=None, description="Where to ship; the customer's address on file when omitted"
    )
    delivery: DeliveryOption = DeliveryOption.STANDARD
    payment: PaymentMethod = Field(
        description="A card token from the payment provider (`tok_...`); never a card number"
    )

    @field_validator("items")
    @classmethod
    def _one_product_within_bounds(cls, items: list[OrderItem]) -> list[OrderItem]:
        """Lines of one SKU are merged into one, which must still be a line we can take."""
        totals: dict[str, int] = {}
        for item in items:
            totals[item.sku] = totals.get(item.sku, 0) + item.quantity
        for sku, total in totals.items():
            if total > MAX_QUANTITY:
                raise PydanticCustomError(
                    "merged_quantity",
                    "the lines of {sku} add up to {total}; at most {limit} of one product "
                    "per order",
                    {"sku": sku, "total": total, "limit": MAX_QUANTITY},
                )
        return items


PLACE_ORDER_EXAMPLES = {
    "paperback": {
        "summary": "One paperback to the address on file",
        "value": {
            "customer_id": "cus_ada",
            "items": [{"sku": "BOOK-DUNE", "quantity": 1}],
            "delivery": "standard",
            "payment": {"token": "tok_visa"},
        },
    },
    "express_mixed": {
        "summary": "Paperback and e-book, express, to a given address",
        "value": {
            "customer_id": "cus_grace",
            "items": [
                {"sku": "BOOK-NEUROMANCER", "quantity": 2},
                {"sku": "EBOOK-DUNE", "quantity": 1},
            ],
            "shipping_address": ADDRESS_EXAMPLE,
            "delivery": "express",
            "payment": {"token": "tok_mastercard"},
        },
    },
    "declined": {
        "summary": "A card the simulated processor declines",
        "value": {
            "customer_id": "cus_ada",
            "items": [{"sku": "BOOK-DUNE", "quantity": 1}],
            "payment": {"token": "tok_chargeDeclined"},
        },
    },
}


class OrderSummary(BaseModel):
    """One line of an order list, from the read model."""

    order_id: str
    customer_id: str
    status: OrderStatus
    reason_code: str | None = None
    currency: str
    total: int | None = Field(default=None, description="Minor units; unknown until priced")
    tracking_numbers: list[str] = Field(
        default=[], description="The order's parcels' tracking numbers, once each is booked"
    )
    holds: list[HoldCode] = Field(default=[], description="The codes of its open holds")
    placed_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; absent on the last page"
    )


CANCEL_EXAMPLES = {
    "changed_mind": {
        "summary": "The customer changed their mind",
        "value": {"reason": "changed my mind"},
    },
    "default": {"summary": "No reason given", "value": {}},
}


class WarehouseStockView(BaseModel):
    """One warehouse's share of a product's stock."""

    warehouse: str = Field(description="Warehouse code, e.g. WH-EAST")
    available: int = Field(description="Units on hand there and not reserved")
    on_hand: int = Field(description="Units on the shelf there, reserved ones included")


class ProductView(BaseModel):
    sku: str
    name: str
    price: int = Field(description="Unit price in minor units")
    currency: str
    digital: bool
    backorderable: bool = Field(
        description="When short, orders wait for it (status `backordered`) instead of being refused"
    )
    available: int | None = Field(
        description="Units on hand and not reserved, over all warehouses; null for digital "
        "goods, which never run out"
    )
    stock: list[WarehouseStockView] = Field(
        description="Per warehouse that stocks the product, in rank order (which breaks "
        "allocation ties); empty for digital goods"
    )


class StockArrival(BaseModel):
    """Units that arrived at a warehouse (a stock receipt)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"warehouse": "WH-EAST", "add": 10}]}
    )

    warehouse: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$")]
    add: int = Field(ge=1, le=100_000, description="Units that arrived")


class StockReceiptView(BaseModel):
    """A stock receipt: the orders it served from the backorder queue, oldest first, and the
    product's stock after it."""

    receipt_id: str
    warehouse: str
    added: int
    filled_orders: list[str] = Field(description="Backordered orders served, in queue order")
    product: ProductView


class CreateCustomerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text
    email: EmailStr
    address: Address | None = Field(default=None, description="Default shipping address")
    owner: OwnerName | None = Field(
        default=None,
        description="Operators only: the API client (its name in API_KEYS) the customer "
        "belongs to. A client's customers are always its own; an operator's without an owner "
        "are shared, which only development honours",
    )


CREATE_CUSTOMER_EXAMPLES = {
    "with_address": {
        "summary": "A customer with a default shipping address",
        "value": {"name": "Ada Lovelace", "email": "ada@example.com", "address": ADDRESS_EXAMPLE},
    },
    "without_address": {
        "summary": "A customer who gives an address with each order",
        "value": {"name": "Alan Turing", "email": "alan@example.com"},
    },
}


class CustomerView(BaseModel):
    id: str
    owner: str | None = Field(
        description="The API client that may order for the customer; null: shared (the demo "
        "customers, for every client in development only)"
    )
    name: str
    email: str
    address: Address | None = None
    blocked: bool
    created_at: datetime


CARRIER_EVENT_EXAMPLES = {
    "in_transit": {
        "summary": "The parcel left the depot",
        "value": {
            "event_id": "evt_01HZX3J8Q4",
            "tracking_number": "OM4F2A9C1D7E3B5A60",
            "status": CarrierStatus.IN_TRANSIT.value,
            "occurred_at": "2026-01-05T09:30:00Z",
            "description": "Departed Springfield depot",
        },
    },
    "delivered": {
        "summary": "The parcel was delivered",
        "value": {
            "event_id": "evt_01HZX9M2K7",
            "tracking_number": "OM4F2A9C1D7E3B5A60",
            "status": CarrierStatus.DELIVERED.value,
            "occurred_at": "2026-01-06T14:02:00Z",
        },
    },
}


class WebhookAck(BaseModel):
    """What the carrier gets back: any 2xx means "do not send this event again"."""

    event_id: str
    outcome: Literal["signalled", "duplicate", "order_closed"] = Field(
        description="signalled: passed to the order; duplicate: seen before, nothing done; "
        "order_closed: recorded, but the order no longer waits for tracking events"
    )


class FieldError(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `items[0].sku`")
    reason: str


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="For validation problems: each field and what is wrong with it"
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(description="Each dependency and `ok` or what failed")


RETURN_EXAMPLES = {
    "refund": {
        "summary": "Send a damaged paperback back for a refund",
        "value": {
            "lines": [{"sku": "BOOK-DUNE", "quantity": 1}],
            "reason": "damaged",
            "resolution": "refund",
        },
    },
    "exchange": {
        "summary": "Exchange the wrong item for the one ordered",
        "value": {
            "lines": [{"sku": "BOOK-NEUROMANCER", "quantity": 1}],
            "reason": "wrong_item",
            "resolution": "exchange",
            "comment": "The cover is a different edition",
        },
    },
    "ebook": {
        "summary": "Refund an e-book (no parcel; the download link stops working)",
        "value": {"lines": [{"sku": "EBOOK-DUNE", "quantity": 1}], "reason": "not_as_described"},
    },
}

INQUIRY_EXAMPLES = {
    "gift_wrap": {
        "summary": "A question about the order",
        "value": {"message": "Can you gift-wrap my order?"},
    },
}

FEEDBACK_EXAMPLES = {
    "happy": {"summary": "Five stars", "value": {"rating": 5, "comment": "Arrived quickly."}},
    "rating_only": {"summary": "A rating without a comment", "value": {"rating": 3}},
}

REFUND_EXAMPLES = {
    "late": {
        "summary": "Goodwill for a late delivery (minor units: $5.00)",
        "value": {"amount": 500, "reason": "late delivery"},
    },
}


class HoldRelease(BaseModel):
    """An operator releases a hold: the step it stopped runs again."""

    model_config = ConfigDict(extra="forbid")

    reason: ShortText | None = Field(default=None, description="Why, for the order's history")


class HoldRejection(BaseModel):
    """An operator rejects a hold: the step is given up, as the order's stage allows."""

    model_config = ConfigDict(extra="forbid")

    reason: Text = Field(description="Why; it goes on the order's timeline")


HOLD_RELEASE_EXAMPLES = {
    "again": {"summary": "Try the step again", "value": {"reason": "the processor is back"}},
    "empty": {"summary": "No reason given", "value": {}},
}
HOLD_REJECTION_EXAMPLES = {
    "written_off": {
        "summary": "Give a declined capture up",
        "value": {"reason": "card closed; written off"},
    },
}
