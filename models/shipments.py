"""Parcels and what carriers say of them: the tracking vocabulary, events and a parcel's view."""

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, Field

from models.text import ONE_LINE


class CarrierStatus(StrEnum):
    """EasyPost's tracking vocabulary."""

    PRE_TRANSIT = "pre_transit"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    RETURN_TO_SENDER = "return_to_sender"
    FAILURE = "failure"


# A shipment only moves forward: an older event arriving late never rewinds it.
CARRIER_PROGRESS = {
    CarrierStatus.PRE_TRANSIT: 1,
    CarrierStatus.IN_TRANSIT: 2,
    CarrierStatus.OUT_FOR_DELIVERY: 3,
    CarrierStatus.DELIVERED: 4,
    CarrierStatus.RETURN_TO_SENDER: 4,
    CarrierStatus.FAILURE: 4,
}
CARRIER_FINAL = frozenset(
    {CarrierStatus.DELIVERED, CarrierStatus.RETURN_TO_SENDER, CarrierStatus.FAILURE}
)


class CarrierEvent(BaseModel):
    """A tracking event as the carrier reported it."""

    event_id: str = Field(min_length=1, max_length=200, pattern=ONE_LINE)
    tracking_number: str = Field(min_length=1, max_length=100, pattern=ONE_LINE)
    status: CarrierStatus
    # Aware only: a naive time cannot be ordered beside the carrier's other events.
    occurred_at: AwareDatetime
    description: str | None = Field(default=None, max_length=500, pattern=ONE_LINE)


class ShipmentLine(BaseModel):
    """Units of one SKU in one parcel."""

    sku: str
    quantity: int


class ShipmentView(BaseModel):
    """One parcel: an outbound parcel from a warehouse, an exchange, or a return label.

    Outbound parcels exist from the moment stock is allocated; carrier and tracking number are
    null until the parcel is booked, and `status` follows the carrier's vocabulary from then.
    """

    shipment_id: str
    warehouse: str | None = None
    lines: list[ShipmentLine] = []
    status: CarrierStatus | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    shipped_at: datetime | None = None
    events: list[CarrierEvent] = []
