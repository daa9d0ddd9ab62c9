"""OrderWorkflow: one order's whole life, from placement to the end of its return window.

Stages: verify the customer -> reserve stock (allocated to parcels by warehouse) -> confirm ->
authorize -> each parcel picked, packed, booked and captured at its hand-over -> every parcel's
carrier outcome -> the return window. A cancel is honoured until the first parcel is handed to
the carrier; every stop releases what the order held (stock, the authorization) and tells the
customer. Parcels, money, customer service and the journal live in modules of their own.
"""

import asyncio
import contextlib
from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.customers import CustomerActivities
    from activities.downloads import DownloadActivities
    from activities.errors import CUSTOMER_REJECTED, OUT_OF_STOCK, PAYMENT_DECLINED, UNKNOWN_SKU
    from activities.inventory import InventoryActivities
    from models.activities import (
        EmailKind,
        OrderRef,
        ReserveStockInput,
        RestockInput,
        RevokeDownloadsInput,
        StockAllocation,
        VerifyCustomerInput,
    )
    from models.orders import (
        CANCELLABLE_STATUSES,
        FINAL_STATUSES,
        Address,
        CancelRequest,
        CarrierEvent,
        CarrierStatus,
        FeedbackRequest,
        FeedbackView,
        GoodwillRefundRequest,
        InquiryRequest,
        InquiryView,
        OrderStatus,
        OrderView,
        PlaceOrderInput,
        Problem,
        RefundKind,
        RefundView,
        ReturnRequest,
        ReturnView,
        ShipmentView,
        money,
        order_totals,
        received_view,
    )
    from models.wire import (
        ORDER_WORKFLOW,
        QUERY_STATUS,
        SIGNAL_CARRIER_EVENT,
        UPDATE_ASK,
        UPDATE_CANCEL,
        UPDATE_FEEDBACK,
        UPDATE_REFUND,
        UPDATE_REQUEST_RETURN,
    )
    from workflows import policies, rules
    from workflows.journal import Journal
    from workflows.money import Money
    from workflows.parcel import Parcel, ParcelKind
    from workflows.service import CustomerService

# Carrier events for tracking numbers the order does not know yet (they beat the booking's
# reply) are kept until it does; past this many, junk is dropped rather than kept forever.
MAX_UNROUTED_EVENTS = 50


class _OrderStopped(Exception):
    """Unwinds the stages once the order has reached a final status."""


@workflow.defn(name=ORDER_WORKFLOW)
class OrderWorkflow:
    @workflow.init
    def __init__(self, order: PlaceOrderInput) -> None:
        self._input = order
        self._journal = Journal(received_view(order))
        self._money = Money(self._journal)
        self._parcels: list[Parcel] = []
        self._by_tracking: dict[str, Parcel] = {}
        self._seen_events: set[tuple[str, str]] = set()
        self._unrouted: list[CarrierEvent] = []
        self._stock_held = False
        # Parcels given to the carrier (or downloads sent); from the first on, no cancel.
        self._handed_over = 0
        self._settled: dict[str, CarrierStatus | None] = {}
        self._cancel_request: CancelRequest | None = None
        self._service = CustomerService(self._journal, self._money, order.timeouts, self._track)

    @property
    def _view(self) -> OrderView:
        return self._journal.view

    @workflow.run
    async def run(self, order: PlaceOrderInput) -> OrderView:
        units = sum(item.quantity for item in order.items)
        self._journal.append("order_received", f"{units} item(s), {order.delivery} delivery")
        with contextlib.suppress(_OrderStopped):
            await self._process(order)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view

    # ---- stages ---------------------------------------------------------------------------

    async def _process(self, order: PlaceOrderInput) -> None:
        await self._verify_customer(order)
        await self._stop_if_cancel_requested()
        await self._reserve_stock(order)
        await self._stop_if_cancel_requested()
        totals = self._view.totals
        assert totals is not None
        await self._journal.change_status(
            OrderStatus.CONFIRMED,
            "order_confirmed",
            f"total {money(totals.total)}",
            summary=f"Confirmed: {rules.describe_lines(order.items)}, {money(totals.total)}",
            email=EmailKind.CONFIRMATION,
        )
        await self._stop_if_cancel_requested()
        await self._authorize(order)
        await self._stop_if_cancel_requested()
        digital = [line for line in self._view.lines if line.digital]
        await self._journal.change_status(
            OrderStatus.FULFILLING,
            "fulfilment_started",
            f"{len(self._parcels)} parcel(s), {len(digital)} digital line(s)",
            summary="Fulfilling: "
            + (
                ", ".join(f"{p.shipment_id} from {p.shipment.warehouse}" for p in self._parcels)
                or "digital delivery"
            ),
        )
        outcomes = await self._fulfil()
        await self._stop_if_cancel_requested()
        await self._settle_delivery(outcomes)
        await self._service.return_window()
        await self._journal.change_status(
            OrderStatus.COMPLETED,
            "completed",
            "return window closed",
            summary="Completed: the return window closed",
        )

    async def _verify_customer(self, order: PlaceOrderInput) -> None:
        try:
            self._journal.customer = await policies.local(
                policies.DATABASE,
                CustomerActivities.verify_customer,
                VerifyCustomerInput(
                    customer_id=order.customer_id, shipping_address=order.shipping_address
                ),
                f"Verify customer {order.customer_id}",
            )
        except (ActivityError, ApplicationError) as err:
            problem = policies.business_problem(err, CUSTOMER_REJECTED)
            if problem is None:
                raise
            await self._stop(OrderStatus.REJECTED, "customer_rejected", problem)
        self._view.shipping_address = self._address

    async def _reserve_stock(self, order: PlaceOrderInput) -> None:
        try:
            reservation = await policies.local(
                policies.DATABASE,
                InventoryActivities.reserve_stock,
                ReserveStockInput(order_id=order.order_id, items=order.items),
                f"Reserve stock for {rules.describe_lines(order.items)}",
            )
        except (ActivityError, ApplicationError) as err:
            problem = policies.business_problem(err, OUT_OF_STOCK, UNKNOWN_SKU)
            if problem is None:
                raise
            await self._stop(OrderStatus.REJECTED, "stock_unavailable", problem)
        self._stock_held = True
        self._view.lines = reservation.lines
        self._view.totals = order_totals(reservation.lines, order.delivery)
        for n, allocation in enumerate(reservation.parcels, start=1):
            shipment = ShipmentView(
                shipment_id=f"SHP-{n}", warehouse=allocation.warehouse, lines=allocation.lines
            )
            self._view.shipments.append(shipment)
            self._parcels.append(
                Parcel(
                    shipment,
                    kind=ParcelKind.OUTBOUND,
                    stock_order_id=order.order_id,
                    delivery=order.delivery,
                    deadline=order.timeouts.delivery_timeout,
                )
            )
        self._journal.append(
            "stock_reserved",
            f"{len(reservation.lines)} line(s) in {len(reservation.parcels)} parcel(s)",
        )

    async def _authorize(self, order: PlaceOrderInput) -> None:
        try:
            await self._money.authorize(order.payment.token)
        except ActivityError as err:
            problem = policies.business_problem(err, PAYMENT_DECLINED)
            if problem is None:
                raise
            await self._release_stock()
            await self._stop(OrderStatus.PAYMENT_DECLINED, "payment_declined", problem)

    async def _fulfil(self) -> list[CarrierStatus | None]:
        """Every parcel on its own journey; a digital-only order is paid and delivered at once."""
        if not self._parcels:
            if self._cancel_request is not None:
                return []
            self._handed_over = 1  # the downloads go out now: too late to cancel
            await self._money.capture(self._view.totals.total if self._view.totals else 0, None)
            await self._send_downloads()
            return []
        return list(await asyncio.gather(*(self._send(parcel) for parcel in self._parcels)))

    async def _send(self, parcel: Parcel) -> CarrierStatus | None:
        """Pack, hand over, capture its share, and wait for the carrier's last word."""
        if not await parcel.pack() or self._cancel_request is not None:
            return None
        first = self._handed_over == 0
        self._handed_over += 1
        await parcel.book(self._view.order_id, self._address)
        self._track(parcel)
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
        if all(p.shipment.shipped_at is not None for p in self._parcels):
            self._stock_held = False
            await self._money.release(cancelled=False)
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
        if len(self._settled) < len(self._parcels):  # else the order's status change records it
            await self._journal.record(
                f"{parcel.shipment_id} {outcome or 'missed its delivery deadline'}"
            )
        return outcome

    async def _send_downloads(self) -> None:
        skus = [line.sku for line in self._view.lines if line.digital]
        await self._journal.note(
            "digital_delivery_sent",
            ", ".join(skus),
            summary="Sent download links for " + ", ".join(skus),
            email=EmailKind.DIGITAL_DELIVERY,
        )

    async def _settle_delivery(self, outcomes: list[CarrierStatus | None]) -> None:
        failed = [
            parcel
            for parcel, outcome in zip(self._parcels, outcomes, strict=True)
            if outcome is not CarrierStatus.DELIVERED
        ]
        for parcel in failed:
            if parcel.shipment.status is CarrierStatus.RETURN_TO_SENDER:
                await self._restock_returned(parcel.shipment)
        status = rules.delivery_status(len(self._parcels) - len(failed), len(failed))
        if status is OrderStatus.DELIVERY_FAILED:
            first = failed[0].shipment
            final = first.status if rules.is_final(first) else None
            problem = Problem(
                code=final.value if final else "delivery_timeout",
                detail=f"{first.shipment_id} {first.tracking_number} was not delivered"
                + ("" if final else f" within {self._input.timeouts.delivery_timeout}"),
            )
            await self._money.refund(
                self._view.payment.captured, RefundKind.DELIVERY_FAILED, problem.code
            )
            await self._revoke_downloads()
            await self._stop(OrderStatus.DELIVERY_FAILED, "delivery_failed", problem)
        detail = "all parcels delivered" if self._parcels else "digital delivery"
        email = EmailKind.DELIVERED
        if status is OrderStatus.PARTIALLY_DELIVERED:
            ids = ", ".join(p.shipment_id for p in failed)
            amount = rules.value_of(
                [line for p in failed for line in p.shipment.lines], self._view.lines
            )
            await self._money.refund(amount, RefundKind.DELIVERY_FAILED, f"{ids} not delivered")
            detail, email = (
                f"{ids} not delivered; {money(amount)} refunded",
                EmailKind.PARTIALLY_DELIVERED,
            )
        now = workflow.now()
        self._view.delivered_at = now
        self._view.return_window_ends_at = now + self._input.timeouts.return_window
        await self._journal.change_status(
            status,
            status.value,
            detail,
            summary=f"{status.value.capitalize()}: {detail}",
            email=email,
        )

    # ---- stopping: cancellation and compensation ------------------------------------------

    async def _stop_if_cancel_requested(self) -> None:
        request = self._cancel_request
        if request is None or self._handed_over:
            return
        await self._money.release(cancelled=True)
        await self._release_stock()
        await self._stop(
            OrderStatus.CANCELLED, "cancelled", Problem(code="cancelled", detail=request.reason)
        )

    async def _release_stock(self) -> None:
        if not self._stock_held:
            return
        await policies.local(
            policies.DATABASE,
            InventoryActivities.release_stock,
            OrderRef(order_id=self._view.order_id),
            "Release reserved stock",
        )
        self._stock_held = False
        self._journal.append("stock_released")

    async def _restock_returned(self, shipment: ShipmentView) -> None:
        """A parcel the carrier brought back goes back on its warehouse's shelf."""
        assert shipment.warehouse is not None
        await policies.local(
            policies.DATABASE,
            InventoryActivities.restock,
            RestockInput(
                order_id=self._view.order_id,
                return_id=shipment.shipment_id,
                parcels=[StockAllocation(warehouse=shipment.warehouse, lines=shipment.lines)],
            ),
            f"Restock {shipment.shipment_id} at {shipment.warehouse}",
        )
        self._journal.append("restocked", shipment.shipment_id)

    async def _revoke_downloads(self) -> None:
        skus = [line.sku for line in self._view.lines if line.digital]
        if skus:
            await policies.local(
                policies.DATABASE,
                DownloadActivities.revoke_downloads,
                RevokeDownloadsInput(order_id=self._view.order_id, skus=skus),
                "Revoke download links",
            )

    async def _stop(self, status: OrderStatus, event: str, problem: Problem) -> NoReturn:
        """Put the order in a final status, tell the customer, and unwind the stages."""
        self._view.reason = problem
        email = {
            OrderStatus.REJECTED: EmailKind.REJECTED,
            OrderStatus.PAYMENT_DECLINED: EmailKind.PAYMENT_DECLINED,
            OrderStatus.CANCELLED: EmailKind.CANCELLED,
            OrderStatus.DELIVERY_FAILED: EmailKind.DELIVERY_FAILED,
        }.get(status)
        await self._journal.change_status(
            status,
            event,
            f"{problem.code}: {problem.detail}",
            summary=f"{status.value.replace('_', ' ').capitalize()}: {problem.detail}",
            email=email,
        )
        raise _OrderStopped

    # ---- carrier events -------------------------------------------------------------------

    @property
    def _address(self) -> Address:
        customer = self._journal.customer
        assert customer is not None
        return customer.shipping_address

    def _track(self, parcel: Parcel) -> None:
        """Route the parcel's tracking number to it, with any events that came before."""
        tracking = parcel.shipment.tracking_number
        assert tracking is not None
        self._by_tracking[tracking] = parcel
        early = [e for e in self._unrouted if e.tracking_number == tracking]
        self._unrouted = [e for e in self._unrouted if e.tracking_number != tracking]
        for event in early:
            self._apply(parcel, event)

    def _apply(self, parcel: Parcel, event: CarrierEvent) -> bool:
        settled = parcel.apply(event)
        detail = f"{parcel.shipment_id} {event.tracking_number}"
        self._journal.append(
            f"carrier_{event.status.value}",
            f"{detail}: {event.description}" if event.description else detail,
        )
        return settled

    @workflow.signal(name=SIGNAL_CARRIER_EVENT)
    async def carrier_event(self, event: CarrierEvent) -> None:
        """A tracking event; duplicates and late, older events change nothing."""
        key = (event.tracking_number, event.event_id)
        if key in self._seen_events:
            return
        self._seen_events.add(key)
        parcel = self._by_tracking.get(event.tracking_number)
        if parcel is None:
            if len(self._unrouted) < MAX_UNROUTED_EVENTS:
                self._unrouted.append(event)
            return
        settled = self._apply(parcel, event)
        if settled and parcel.awaited:
            return  # the flow waiting for this parcel records its outcome at once
        await self._journal.record(f"{parcel.shipment_id} {event.status.value.replace('_', ' ')}")

    # ---- messages ---------------------------------------------------------------------------

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> OrderView:
        return self._view

    @workflow.update(name=UPDATE_CANCEL)
    async def cancel(self, request: CancelRequest) -> OrderView:
        if self._cancel_request is None:
            self._cancel_request = request
            for parcel in self._parcels:
                parcel.stop()
            self._journal.append("cancel_requested", request.reason)
            await self._journal.record("Cancel requested")  # shown while it takes effect
        await workflow.wait_condition(lambda: self._view.status in FINAL_STATUSES)
        return self._view

    @cancel.validator
    def validate_cancel(self, request: CancelRequest) -> None:
        status = self._view.status
        if self._cancel_request is not None or status is OrderStatus.CANCELLED:
            return  # asking twice is answered with the same cancelled order
        if status not in CANCELLABLE_STATUSES or self._handed_over:
            # Between packing and the first label the status is still `fulfilling`; past
            # that, the status itself (shipped, delivered, ...) is the truthful answer.
            shown = "handed to the carrier" if status in CANCELLABLE_STATUSES else status.value
            raise ApplicationError(
                f"order {self._view.order_id} can no longer be cancelled: it is {shown}",
                status.value,
                type="CancelRefused",
            )

    @workflow.update(name=UPDATE_REQUEST_RETURN)
    async def request_return(self, request: ReturnRequest) -> ReturnView:
        return await self._service.request_return(request, self._address)

    @request_return.validator
    def validate_return(self, request: ReturnRequest) -> None:
        self._service.validate_return(request)

    @workflow.update(name=UPDATE_REFUND)
    async def refund(self, request: GoodwillRefundRequest) -> RefundView:
        """An operator's goodwill refund, bounded by what is left of the captures."""
        return await self._service.goodwill_refund(request)

    @refund.validator
    def validate_refund(self, request: GoodwillRefundRequest) -> None:
        self._service.validate_goodwill_refund(request)

    @workflow.update(name=UPDATE_ASK)
    async def ask(self, request: InquiryRequest) -> InquiryView:
        return await self._service.ask(request)

    @workflow.update(name=UPDATE_FEEDBACK)
    async def give_feedback(self, request: FeedbackRequest) -> FeedbackView:
        return await self._service.give_feedback(request)

    @give_feedback.validator
    def validate_feedback(self, request: FeedbackRequest) -> None:
        self._service.validate_feedback(request)
