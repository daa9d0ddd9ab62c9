"""Returns and exchanges on a delivered order, and the return window they happen in.

Returns work on the lines of any delivered parcel. A return label is a parcel of its own; once
it is back, the units go to the warehouses that sent them, and the return is refunded or, for
an exchange, the same items are sent again at no charge, in one parcel.
"""

import asyncio
import contextlib
from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from activities.downloads import DownloadActivities
from activities.errors import OUT_OF_STOCK, UNKNOWN_SKU
from activities.inventory import InventoryActivities
from models.activities import (
    EmailKind,
    OrderRef,
    ReserveStockInput,
    RestockInput,
    RevokeDownloadsInput,
)
from models.orders import (
    AFTER_DELIVERY_STATUSES,
    OPEN_RETURN_STATUSES,
    Address,
    DeliveryOption,
    OrderItem,
    PlaceOrderInput,
    RefundKind,
    ReturnRequest,
    ReturnResolution,
    ReturnStatus,
    ReturnView,
    money,
)
from models.shipments import CarrierStatus, ShipmentView
from workflows import policies, rules
from workflows.holds import HoldRejected, Holds
from workflows.journal import Journal
from workflows.money import Money
from workflows.parcel import Parcel, ParcelKind
from workflows.service import refuse


class Returns:
    def __init__(
        self,
        journal: Journal,
        money: Money,
        holds: Holds,
        order: PlaceOrderInput,
        track: Callable[[Parcel], None],
    ) -> None:
        self._journal = journal
        self._money = money
        self._holds = holds
        self._timeouts = order.timeouts
        self._track = track  # routes a new parcel's carrier events to it
        self._return_tasks: list[asyncio.Task[None]] = []
        self._window_closed = False

    @property
    def _order_id(self) -> str:
        return self._journal.view.order_id

    async def return_window(self) -> None:
        """Stay open for returns until the window closes and every open return has ended."""
        view = self._journal.view
        await workflow.sleep(self._timeouts.return_window, summary="return window")
        self._window_closed = True
        await workflow.wait_condition(
            lambda: all(r.status not in OPEN_RETURN_STATUSES for r in view.returns)
        )
        await asyncio.gather(*self._return_tasks)

    def validate_return(self, request: ReturnRequest) -> None:
        view = self._journal.view
        if view.status not in AFTER_DELIVERY_STATUSES or view.return_window_ends_at is None:
            refuse("ReturnRefused", f"only a delivered order can be returned; it is {view.status}")
        if self._window_closed or workflow.now() > view.return_window_ends_at:
            refuse(
                "ReturnRefused",
                f"the return window closed on {view.return_window_ends_at:%Y-%m-%d %H:%M} UTC",
            )
        lines = {line.sku: line for line in view.lines}
        for line in rules.merge_lines(request.lines):
            if line.sku not in lines:
                refuse("ReturnRefused", f"{line.sku} is not part of this order")
            left = rules.returnable(line.sku, view.shipments, view.lines, view.returns)
            if line.quantity > left:
                refuse(
                    "ReturnRefused",
                    f"only {left} of {line.sku} can still be returned, not {line.quantity}",
                )
        kinds = {lines[line.sku].digital for line in request.lines}
        if len(kinds) > 1:
            refuse("ReturnRefused", "return digital and physical items separately")
        if kinds == {True} and request.resolution is ReturnResolution.EXCHANGE:
            refuse("ReturnRefused", "digital items can be refunded, not exchanged")

    async def request_return(self, request: ReturnRequest, address: Address) -> ReturnView:
        view = self._journal.view
        lines = rules.merge_lines(request.lines)
        ordered = {line.sku: line for line in view.lines}
        ret = ReturnView(
            return_id=f"RET-{len(view.returns) + 1}",
            lines=lines,
            reason=request.reason,
            resolution=request.resolution,
            status=ReturnStatus.AWAITING_PARCEL,
            digital=ordered[lines[0].sku].digital,
            requested_at=workflow.now(),
        )
        view.returns.append(ret)
        what = f"{ret.return_id}: {rules.describe_lines(lines)} ({request.reason})"
        if ret.digital:
            self._journal.append("return_requested", what)
            await self.revoke_downloads([line.sku for line in lines], f"for {ret.return_id}")
            await self._refund_return(ret)
            return ret
        label = Parcel(
            ShipmentView(shipment_id=f"{ret.return_id}-label", lines=lines),
            kind=ParcelKind.RETURN,
            stock_order_id=self._order_id,
            delivery=DeliveryOption.STANDARD,
            deadline=self._timeouts.return_arrival_timeout,
            holds=self._holds,
        )
        try:
            await label.book(self._order_id, address)
        except HoldRejected as rejected:
            ret.status = ReturnStatus.NOT_RECEIVED
            ret.closed_at = workflow.now()
            await self._journal.note(
                "return_label_failed",
                f"{ret.return_id}: {rejected.hold.reason}",
                summary=f"Return {ret.return_id}: no label could be booked",
            )
            return ret
        ret.tracking_number = label.shipment.tracking_number
        self._track(label)
        await self._journal.note(
            "return_requested",
            f"{what}, label {ret.tracking_number}",
            summary=f"Return {ret.return_id} requested: {rules.describe_lines(lines)}",
            email=EmailKind.RETURN_LABEL,
            reference=ret.return_id,
        )
        self._return_tasks.append(asyncio.create_task(self._follow_return(ret, label, address)))
        return ret

    async def _follow_return(self, ret: ReturnView, label: Parcel, address: Address) -> None:
        """From return label to outcome: wait for the parcel, restock, then refund or exchange."""
        view = self._journal.view
        if await label.outcome() is not CarrierStatus.DELIVERED:
            ret.status = ReturnStatus.NOT_RECEIVED
            ret.closed_at = workflow.now()
            await self._journal.note(
                "return_not_received",
                f"{ret.return_id} {ret.tracking_number}",
                summary=f"Return {ret.return_id} never arrived: closed without a refund",
                email=EmailKind.RETURN_NOT_RECEIVED,
                reference=ret.return_id,
            )
            return
        earlier = [
            r
            for r in view.returns
            if r is not ret
            and r.status not in (ReturnStatus.AWAITING_PARCEL, ReturnStatus.NOT_RECEIVED)
        ]
        ret.status = ReturnStatus.RECEIVED
        await self.restock(
            RestockInput(
                order_id=self._order_id,
                return_id=ret.return_id,
                parcels=rules.restock_parcels(ret.lines, view.shipments, earlier),
            )
        )
        self._journal.append("return_received", ret.return_id)
        if ret.resolution is ReturnResolution.EXCHANGE and await self._exchange(ret, address):
            return
        await self._refund_return(ret)

    async def _exchange(self, ret: ReturnView, address: Address) -> bool:
        """Send the same items again at no charge, in one parcel; False if none can."""
        exchange_id = f"{self._order_id}-{ret.return_id}"
        items = [OrderItem(sku=line.sku, quantity=line.quantity) for line in ret.lines]
        what = f"Reserve exchange stock for {ret.return_id}"
        reserve = ReserveStockInput(order_id=exchange_id, items=items, single_warehouse=True)
        try:
            reservation = await self._holds.attempt(
                what,
                lambda: policies.local(
                    policies.DATABASE, InventoryActivities.reserve_stock, reserve, what
                ),
            )
        except HoldRejected:
            self._journal.append("exchange_unavailable", f"{ret.return_id}: refunding instead")
            return False
        except (ActivityError, ApplicationError) as err:
            if policies.business_problem(err, OUT_OF_STOCK, UNKNOWN_SKU) is None:
                raise
            self._journal.append("exchange_unavailable", f"{ret.return_id}: refunding instead")
            return False
        allocation = reservation.parcels[0]
        shipment = ShipmentView(
            shipment_id=f"{ret.return_id}-exchange",
            warehouse=allocation.warehouse,
            lines=allocation.lines,
        )
        ret.exchange_shipment = shipment
        parcel = Parcel(
            shipment,
            kind=ParcelKind.EXCHANGE,
            stock_order_id=exchange_id,
            delivery=DeliveryOption.STANDARD,
            deadline=self._timeouts.delivery_timeout,
            holds=self._holds,
        )
        try:
            await parcel.pack()
            await parcel.book(self._order_id, address)
        except HoldRejected:
            ret.exchange_shipment = None
            await self._release_exchange_stock(exchange_id)
            self._journal.append("exchange_unavailable", f"{ret.return_id}: refunding instead")
            return False
        self._track(parcel)
        await parcel.commit_stock()
        parcel.hand_over()
        ret.status = ReturnStatus.EXCHANGE_SHIPPED
        await self._journal.note(
            "exchange_shipped",
            f"{ret.return_id} {shipment.tracking_number}",
            summary=f"Exchange for {ret.return_id} shipped: {shipment.tracking_number}",
            email=EmailKind.EXCHANGE_SHIPPED,
            reference=ret.return_id,
        )
        if await parcel.outcome() is CarrierStatus.DELIVERED:
            ret.status = ReturnStatus.EXCHANGE_DELIVERED
            ret.closed_at = workflow.now()
            await self._journal.note(
                "exchange_delivered",
                ret.return_id,
                summary=f"Exchange for {ret.return_id} delivered",
            )
            return True
        self._journal.append("exchange_not_delivered", f"{ret.return_id}: refunding instead")
        return False

    async def _refund_return(self, ret: ReturnView) -> None:
        view = self._journal.view
        refund = await self._money.refund(
            rules.value_of(ret.lines, view.lines),
            RefundKind.RETURN,
            ret.reason.value,
            ret.return_id,
        )
        ret.refund_amount = refund.amount if refund else 0
        ret.status = ReturnStatus.REFUNDED
        ret.closed_at = workflow.now()
        status = rules.return_status(view.returns, view.shipments, view.lines)
        detail = f"{ret.return_id}: {money(ret.refund_amount)} refunded"
        summary = f"Refunded {money(ret.refund_amount)} for {ret.return_id}"
        if status is not view.status:
            await self._journal.change_status(
                status,
                status.value,
                detail,
                summary=summary,
                email=EmailKind.RETURN_REFUNDED,
                reference=ret.return_id,
            )
        else:
            await self._journal.note(
                "return_refunded",
                detail,
                summary=summary,
                email=EmailKind.RETURN_REFUNDED,
                reference=ret.return_id,
            )

    async def _release_exchange_stock(self, exchange_id: str) -> None:
        what = f"Release exchange stock {exchange_id}"
        with contextlib.suppress(HoldRejected):
            await self._holds.attempt(
                what,
                lambda: policies.local(
                    policies.DATABASE,
                    InventoryActivities.release_stock,
                    OrderRef(order_id=exchange_id),
                    what,
                ),
            )

    async def restock(self, restock: RestockInput) -> None:
        """Returned units back on the shelf; an operator may give it up (and count by hand)."""
        what = f"Restock {restock.return_id}"
        with contextlib.suppress(HoldRejected):
            await self._holds.attempt(
                what,
                lambda: policies.local(
                    policies.DATABASE, InventoryActivities.restock, restock, what
                ),
            )

    async def revoke_downloads(self, skus: list[str], why: str) -> None:
        """Refunded digital lines stop downloading."""
        if not skus:
            return
        what = f"Revoke download links {why}"
        revoke = RevokeDownloadsInput(order_id=self._order_id, skus=skus)
        with contextlib.suppress(HoldRejected):
            await self._holds.attempt(
                what,
                lambda: policies.local(
                    policies.DATABASE, DownloadActivities.revoke_downloads, revoke, what
                ),
            )
