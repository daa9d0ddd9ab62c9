"""What `make demo` plays: its customers, the carrier's scripts and one Scenario per order."""

from dataclasses import dataclass, field
from typing import Any

from models.orders import OrderStatus
from models.shipments import CarrierStatus

ADA = "cus_ada"
GRACE = "cus_grace"
NEWBIE = "cus_newbie"  # every order of hers waits for a risk review
TO_THE_DOOR = [
    CarrierStatus.PRE_TRANSIT,
    CarrierStatus.IN_TRANSIT,
    CarrierStatus.OUT_FOR_DELIVERY,
    CarrierStatus.DELIVERED,
]
BACK_TO_US = [
    CarrierStatus.PRE_TRANSIT,
    CarrierStatus.IN_TRANSIT,
    CarrierStatus.RETURN_TO_SENDER,
]


@dataclass(frozen=True)
class Scenario:
    label: str
    customer_id: str
    items: list[tuple[str, int]]
    token: str = "tok_visa"
    delivery: str = "standard"
    carrier: list[CarrierStatus] = field(default_factory=list)  # played per parcel once shipped
    # A parcel that gets a script of its own, by shipment id (`SHP-2`).
    parcels: dict[str, list[CarrierStatus]] = field(default_factory=dict)
    cancel: bool = False
    returns: list[tuple[str, int]] = field(default_factory=list)  # sent back once delivered
    review: str | None = None  # the operator's decision on its risk review: release or reject
    restock: bool = False  # the operator receives its backordered stock once it waits
    replenish: bool = False  # a unit of each line arrives first, so the demo never runs out
    expect: OrderStatus = OrderStatus.DELIVERED

    def body(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in self.items],
            "delivery": self.delivery,
            "payment": {"token": self.token},
        }


SCENARIOS = [
    Scenario("paperback, standard", ADA, [("BOOK-DUNE", 1)], carrier=TO_THE_DOOR),
    Scenario(
        "two paperbacks, express",
        GRACE,
        [("BOOK-NEUROMANCER", 2)],
        delivery="express",
        carrier=TO_THE_DOOR,
    ),
    Scenario("e-book only", ADA, [("EBOOK-DUNE", 1)]),
    Scenario(
        "card declined",
        GRACE,
        [("BOOK-DUNE", 1)],
        token="tok_chargeDeclined",
        expect=OrderStatus.PAYMENT_DECLINED,
    ),
    Scenario(
        "cancelled by the customer",
        ADA,
        [("BOOK-NEUROMANCER", 1)],
        cancel=True,
        expect=OrderStatus.CANCELLED,
    ),
    Scenario(
        "flaky card gateway",
        GRACE,
        [("BOOK-DUNE", 1)],
        token="tok_gatewayFlaky",
        carrier=TO_THE_DOOR,
    ),
    Scenario(
        "two parcels, two warehouses",
        ADA,
        [("BOOK-NEUROMANCER", 1), ("BOOK-EARTHSEA", 1)],
        carrier=TO_THE_DOOR,
    ),
    Scenario(
        "one parcel lost of two",
        GRACE,
        [("BOOK-NEUROMANCER", 1), ("BOOK-EARTHSEA", 2)],
        carrier=TO_THE_DOOR,
        parcels={"SHP-2": BACK_TO_US},
        expect=OrderStatus.PARTIALLY_DELIVERED,
    ),
    Scenario(
        "one of two sent back",
        GRACE,
        [("BOOK-DUNE", 1), ("BOOK-NEUROMANCER", 1)],
        carrier=TO_THE_DOOR,
        returns=[("BOOK-NEUROMANCER", 1)],
        expect=OrderStatus.PARTIALLY_RETURNED,
    ),
    Scenario(
        "returned to sender",
        ADA,
        [("BOOK-DUNE", 1), ("BOOK-NEUROMANCER", 1)],
        carrier=BACK_TO_US,
        expect=OrderStatus.DELIVERY_FAILED,
    ),
    Scenario(
        "$1,200 first edition, reviewed",
        GRACE,
        [("BOOK-FIRST-EDITION", 1)],
        carrier=TO_THE_DOOR,
        review="release",
        replenish=True,
    ),
    Scenario(
        "new customer, review rejected",
        NEWBIE,
        [("BOOK-DUNE", 1)],
        review="reject",
        expect=OrderStatus.CANCELLED,
    ),
    Scenario(
        "backordered until restocked",
        ADA,
        [("BOOK-PREORDER", 1)],
        carrier=TO_THE_DOOR,
        restock=True,
    ),
]
