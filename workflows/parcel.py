"""One parcel's journey: pick/pack -> book -> carrier events -> outcome.

The same code carries an outbound parcel from its warehouse, an exchange sent after a return,
and a return label on its way back; what differs is which steps it takes. Parcels live inside
the order's workflow (a child workflow each would double the server's work per order).
"""

import contextlib
from datetime import timedelta
from enum import StrEnum

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

from activities.inventory import InventoryActivities
from activities.shipping import ShippingActivities
from activities.warehouse import WarehouseActivities
from models.activities import (
    BookShipmentInput,
    CommitStockInput,
    PickPackInput,
    ShipmentDirection,
)
from models.activities import (
    Parcel as PackedParcel,
)
from models.orders import Address, DeliveryOption
from models.shipments import CarrierEvent, CarrierStatus, ShipmentView
from workflows import policies, rules
from workflows.holds import HoldRejected, Holds


class ParcelKind(StrEnum):
    OUTBOUND = "outbound"  # the order's own parcel, from its warehouse
    EXCHANGE = "exchange"  # replacement items after a return, at no charge
    RETURN = "return"  # a return label: the customer's parcel coming back


class Parcel:
    def __init__(
        self,
        shipment: ShipmentView,
        *,
        kind: ParcelKind,
        stock_order_id: str,
        delivery: DeliveryOption,
        deadline: timedelta,
        holds: Holds,
    ) -> None:
        self.shipment = shipment
        self._holds = holds
        self.kind = kind
        # Whose stock it carries: the order's, or an exchange's own reservation.
        self._stock_order_id = stock_order_id
        self._delivery = delivery if kind is ParcelKind.OUTBOUND else DeliveryOption.STANDARD
        self._deadline = deadline
        self._pick_pack: workflow.ActivityHandle[PackedParcel] | None = None
        self._stopped = False
        # Whether a flow waits for this parcel's outcome and will record it when it comes.
        self.awaited = False

    @property
    def shipment_id(self) -> str:
        return self.shipment.shipment_id

    async def pack(self) -> bool:
        """Pick and pack at the warehouse; False if the order's cancel stopped it first.

        A warehouse that stays unreachable holds the order; a rejected hold raises
        HoldRejected (the order decides what giving the parcel up means).
        """
        shipment = self.shipment
        assert shipment.warehouse is not None
        warehouse = shipment.warehouse
        what = f"Pick and pack {shipment.shipment_id} at {warehouse}: " + rules.describe_lines(
            shipment.lines
        )

        async def pick() -> None:
            self._pick_pack = policies.start_remote(
                policies.WAREHOUSE,
                WarehouseActivities.pick_and_pack,
                PickPackInput(
                    order_id=self._stock_order_id,
                    shipment_id=shipment.shipment_id,
                    warehouse=warehouse,
                    lines=shipment.lines,
                ),
                what,
            )
            try:
                await self._pick_pack
            finally:
                self._pick_pack = None

        if self._stopped:  # cancelled before the warehouse was asked
            return False
        try:
            await self._holds.attempt(what, pick)
        except ActivityError as err:
            if self._stopped and isinstance(err.cause, CancelledError):
                return False
            raise
        except HoldRejected:
            if self._stopped:  # the cancel rejected the hold
                return False
            raise
        return not self._stopped

    def stop(self) -> None:
        """The order was cancelled: stop the warehouse, and never start it."""
        self._stopped = True
        if self._pick_pack is not None:
            self._pick_pack.cancel()

    async def book(self, order_id: str, address: Address) -> None:
        direction = (
            ShipmentDirection.RETURN
            if self.kind is ParcelKind.RETURN
            else ShipmentDirection.OUTBOUND
        )
        shipment = self.shipment
        what = f"Book {shipment.shipment_id} ({self.kind.value}, {self._delivery.value})"
        booking = BookShipmentInput(
            order_id=order_id,
            parcel_id=shipment.shipment_id,
            delivery=self._delivery,
            address=address,
            idempotency_key=str(workflow.uuid4()),
            direction=direction,
            warehouse=shipment.warehouse,
        )
        booked = await self._holds.attempt(
            what,
            lambda: policies.remote(
                policies.CARRIER, ShippingActivities.book_shipment, booking, what
            ),
        )
        shipment.carrier = booked.carrier
        shipment.tracking_number = booked.tracking_number

    async def commit_stock(self) -> None:
        """Its units left the warehouse: no longer on hand there (skipped if an operator
        rejects the hold of a database that stays down: the stock count is then theirs)."""
        assert self.shipment.warehouse is not None
        what = f"Commit {self.shipment.shipment_id}'s stock at {self.shipment.warehouse}"
        commit = CommitStockInput(order_id=self._stock_order_id, warehouse=self.shipment.warehouse)
        with contextlib.suppress(HoldRejected):
            await self._holds.attempt(
                what,
                lambda: policies.local(
                    policies.DATABASE, InventoryActivities.commit_stock, commit, what
                ),
            )

    def hand_over(self) -> None:
        self.shipment.shipped_at = workflow.now()

    def apply(self, event: CarrierEvent) -> bool:
        """Merge a carrier event; True if it settled the parcel just now."""
        was_final = rules.is_final(self.shipment)
        rules.merge_event(self.shipment, event)
        return not was_final and rules.is_final(self.shipment)

    async def outcome(self) -> CarrierStatus | None:
        """Wait for a final carrier state; None if the deadline from hand-over passed first."""
        self.awaited = True
        try:
            await workflow.wait_condition(
                lambda: rules.is_final(self.shipment),
                timeout=self._deadline,
                timeout_summary=f"{self.shipment_id} "
                + ("arrival" if self.kind is ParcelKind.RETURN else "delivery")
                + " deadline",
            )
        except TimeoutError:
            return None
        finally:
            self.awaited = False
        return self.shipment.status
