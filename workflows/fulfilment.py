"""Fulfilment: every parcel of the order on its own journey, then the order's delivery outcome.

Parcels are picked, packed, booked and captured side by side; from the first hand-over the
order can no longer be cancelled. Once every parcel has reached a final carrier state (or its
deadline), the order is delivered, partially delivered (the failed parcels' lines refunded) or
its delivery has failed (everything refunded).
"""

import asyncio
import contextlib
from collections.abc import Callable

from temporalio import workflow

from activities.inventory import InventoryActivities
from models.activities import (
    DIGITAL_DELIVERY_EVENT,
    EmailKind,
    OrderRef,
    RestockInput,
    StockAllocation,
)
from models.orders import (
    Address,
    CancelRequest,
    OrderStatus,
    OrderView,
    PlaceOrderInput,
    Problem,
    RefundKind,
    money,
)
from models.shipments import CarrierStatus, ShipmentView
from workflows import policies, rules
from workflows.holds import HoldRejected, Holds
from workflows.journal import Journal
from workflows.money import Money
from workflows.parcel import Parcel, ParcelKind
from workflows.returns import Returns
from workflows.tracking import CarrierEvents


class Fulfilment:
    def __init__(
        self,
        order: PlaceOrderInput,
        journal: Journal,
        money: Money,
        holds: Holds,
        returns: Returns,
        carrier: CarrierEvents,
        address: Callable[[], Address],
    ) -> None:
        self._order = order
        self._journal = journal
        self._money = money
        self._holds = holds
        self._returns = returns
        self._carrier = carrier
        self._address = address
        self.parcels: list[Parcel] = []
        self.stock_held = False
        # Parcels given to the carrier (or downloads sent); from the first on, no cancel.
        self.handed_over = 0
        self.cancel_request: CancelRequest | None = None
        self._settled: dict[str, CarrierStatus | None] = {}
        self._given_up: set[str] = set()  # parcels an operator gave up before their hand-over

    @property
    def _view(self) -> OrderView:
        return self._journal.view

    def allocate(self, parcels: list[StockAllocation]) -> None:
        """One parcel per warehouse that holds the order's stock: SHP-1, SHP-2, ..."""
        self.stock_held = True
        for n, allocation in enumerate(parcels, start=1):
            shipment = ShipmentView(
                shipment_id=f"SHP-{n}", warehouse=allocation.warehouse, lines=allocation.lines
            )
            self._view.shipments.append(shipment)
            self.parcels.append(
                Parcel(
                    shipment,
                    kind=ParcelKind.OUTBOUND,
                    stock_order_id=self._order.order_id,
                    delivery=self._order.delivery,
                    deadline=self._order.timeouts.delivery_timeout,
                    holds=self._holds,
                )
            )

    def cancel(self, request: CancelRequest) -> None:
        """Stop every warehouse; the order's stages then stop the order."""
        if self.cancel_request is None:
            self.cancel_request = request
        for parcel in self.parcels:
            parcel.stop()

    async def run(self) -> list[CarrierStatus | None]:
        """Every parcel on its own journey; a digital-only order is paid and delivered at once."""
        if not self.parcels:
            if self.cancel_request is not None:
                return []
            self.handed_over = 1  # the downloads go out now: too late to cancel
            await self._money.capture(self._view.totals.total if self._view.totals else 0, None)
            await self._send_downloads()
            return []
        return list(await asyncio.gather(*(self._send(parcel) for parcel in self.parcels)))

    async def _send(self, parcel: Parcel) -> CarrierStatus | None:
        """Pack, hand over, capture its share, and wait for the carrier's last word."""
        try:
            if not await parcel.pack() or self.cancel_request is not None:
                return None
            first = self.handed_over == 0
            self.handed_over += 1  # no cancel from here on: the parcel is the carrier's
            try:
                await parcel.book(self._view.order_id, self._address())
            except HoldRejected:
                self.handed_over -= 1  # it never reached the carrier after all
                raise
        except HoldRejected as rejected:
            await self._give_up(parcel, rejected)
            return None
        self._carrier.track(parcel)
        await parcel.commit_stock()
        totals = self._view.totals
        assert totals is not None
        await self._money.capture(
            rules.capture_amount(parcel.shipment, self._view.lines, totals, first=first),
            parcel.shipment_id,
        )
        parcel.hand_over()
        if first and any(line.digital for line in self._view.lines):
            await self._send_downloads()
        await self._release_rest_once_all_left()
        shipment = parcel.shipment
        await self._journal.change_status(
            rules.shipping_status(self._view.shipments),
            "shipped",
            f"{shipment.shipment_id} {shipment.carrier} {shipment.tracking_number}",
            summary=f"Shipped {shipment.shipment_id} from {shipment.warehouse}: "
            f"{shipment.carrier} {shipment.tracking_number}",
            email=EmailKind.SHIPPED,
            reference=shipment.shipment_id,
        )
        outcome = await parcel.outcome()
        self._settled[parcel.shipment_id] = outcome
        if outcome is None:
            self._journal.append(
                "delivery_deadline_passed", f"{parcel.shipment_id} {shipment.tracking_number}"
            )
        if len(self._settled) < len(self.parcels):  # else the order's status change records it
            await self._journal.record(
                f"{parcel.shipment_id} {outcome or 'missed its delivery deadline'}"
            )
        return outcome

    async def _give_up(self, parcel: Parcel, rejected: HoldRejected) -> None:
        """An operator gave up a parcel before it reached the carrier."""
        reason = rejected.reason
        if self.handed_over == 0:  # nothing has left: the whole order is cancelled
            self.cancel(CancelRequest(reason=reason))
            return
        self._given_up.add(parcel.shipment_id)
        self._settled[parcel.shipment_id] = None
        self._journal.append("parcel_given_up", f"{parcel.shipment_id}: {reason}")
        await self._release_rest_once_all_left()

    async def _release_rest_once_all_left(self) -> None:
        """Once no parcel is left to hand over, the authorization's uncaptured rest goes."""
        if all(
            p.shipment.shipped_at is not None or p.shipment_id in self._given_up
            for p in self.parcels
        ):
            if self._given_up:
                await self.release_stock()  # the given-up parcels' units, still held
            self.stock_held = False
            await self._money.release(cancelled=False)

    async def _send_downloads(self) -> None:
        skus = [line.sku for line in self._view.lines if line.digital]
        await self._journal.note(
            DIGITAL_DELIVERY_EVENT,
            ", ".join(skus),
            summary="Sent download links for " + ", ".join(skus),
            email=EmailKind.DIGITAL_DELIVERY,
        )

    async def settle(self, outcomes: list[CarrierStatus | None]) -> Problem | None:
        """The order's delivery outcome, recorded; the problem if its delivery failed."""
        view = self._view
        failed = [
            parcel
            for parcel, outcome in zip(self.parcels, outcomes, strict=True)
            if outcome is not CarrierStatus.DELIVERED
        ]
        for parcel in failed:
            if parcel.shipment.status is CarrierStatus.RETURN_TO_SENDER:
                await self._restock_returned(parcel.shipment)
        status = rules.delivery_status(len(self.parcels) - len(failed), len(failed))
        if status is OrderStatus.DELIVERY_FAILED:
            first = failed[0].shipment
            final = first.status if rules.is_final(first) else None
            problem = Problem(
                code=final.value if final else "delivery_timeout",
                detail=f"{first.shipment_id} {first.tracking_number} was not delivered"
                + ("" if final else f" within {self._order.timeouts.delivery_timeout}"),
            )
            await self._money.refund(
                view.payment.captured, RefundKind.DELIVERY_FAILED, problem.code
            )
            await self._returns.revoke_downloads(
                [line.sku for line in view.lines if line.digital], "of a failed delivery"
            )
            return problem
        detail = "all parcels delivered" if self.parcels else "digital delivery"
        email = EmailKind.DELIVERED
        if status is OrderStatus.PARTIALLY_DELIVERED:
            ids = ", ".join(p.shipment_id for p in failed)
            # Only what was paid for: a parcel given up before its hand-over was never captured.
            amount = rules.value_of(
                [line for p in failed if p.shipment.shipped_at for line in p.shipment.lines],
                view.lines,
            )
            await self._money.refund(amount, RefundKind.DELIVERY_FAILED, f"{ids} not delivered")
            detail = f"{ids} not delivered; {money(amount)} refunded"
            email = EmailKind.PARTIALLY_DELIVERED
        now = workflow.now()
        view.delivered_at = now
        view.return_window_ends_at = now + self._order.timeouts.return_window
        await self._journal.change_status(
            status,
            status.value,
            detail,
            summary=f"{status.value.capitalize()}: {detail}",
            email=email,
        )
        return None

    async def _restock_returned(self, shipment: ShipmentView) -> None:
        """A parcel the carrier brought back goes back on its warehouse's shelf."""
        assert shipment.warehouse is not None
        await self._returns.restock(
            RestockInput(
                order_id=self._view.order_id,
                return_id=shipment.shipment_id,
                parcels=[StockAllocation(warehouse=shipment.warehouse, lines=shipment.lines)],
            )
        )
        self._journal.append("restocked", shipment.shipment_id)

    async def release_stock(self) -> None:
        """Give back whatever stock the order still holds."""
        if not self.stock_held:
            return
        what = "Release reserved stock"
        release = OrderRef(order_id=self._view.order_id)
        with contextlib.suppress(HoldRejected):  # the stock count is then the operator's
            await self._holds.attempt(
                what,
                lambda: policies.local(
                    policies.DATABASE, InventoryActivities.release_stock, release, what
                ),
            )
        self.stock_held = False
        self._journal.append("stock_released")
