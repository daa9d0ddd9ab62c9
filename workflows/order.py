"""OrderWorkflow: one order's whole life, from placement to the end of its return window.

Stages: verify the customer -> reserve stock (allocated to parcels by warehouse) -> confirm ->
authorize -> each parcel picked, packed, booked and captured at its hand-over -> every parcel's
carrier outcome -> the return window. A cancel is honoured until the first parcel is handed to
the carrier; every stop releases what the order held (stock, the authorization) and tells the
customer. Parcels, money, customer service and the journal live in modules of their own.
"""

import contextlib
from typing import NoReturn

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError

from activities.customers import CustomerActivities
from activities.errors import CUSTOMER_REJECTED, OUT_OF_STOCK, PAYMENT_DECLINED, UNKNOWN_SKU
from activities.inventory import InventoryActivities
from models.activities import (
    BackorderFilled,
    EmailKind,
    ReserveStockInput,
    VerifyCustomerInput,
)
from models.holds import HoldCode, HoldDecision, HoldResolution
from models.orders import (
    CANCELLABLE_STATUSES,
    FINAL_STATUSES,
    Address,
    CancelRequest,
    FeedbackRequest,
    FeedbackView,
    GoodwillRefundRequest,
    InquiryRequest,
    InquiryView,
    OrderStatus,
    OrderView,
    PlaceOrderInput,
    Problem,
    RefundView,
    ReturnRequest,
    ReturnView,
    money,
    order_totals,
    received_view,
)
from models.wire import (
    ORDER_WORKFLOW,
    QUERY_STATUS,
    SIGNAL_BACKORDER_FILLED,
    SIGNAL_CARRIER_EVENT,
    UPDATE_ASK,
    UPDATE_CANCEL,
    UPDATE_FEEDBACK,
    UPDATE_REFUND,
    UPDATE_REQUEST_RETURN,
    UPDATE_RESOLVE_HOLD,
)
from workflows import metrics, policies, rules
from workflows.fulfilment import Fulfilment
from workflows.holds import HoldRejected, Holds
from workflows.journal import Journal
from workflows.money import Money
from workflows.returns import Returns
from workflows.service import CustomerService
from workflows.tracking import CarrierEvents


class _OrderStopped(Exception):
    """Unwinds the stages once the order has reached a final status."""


@workflow.defn(name=ORDER_WORKFLOW, sandboxed=False)
class OrderWorkflow:
    @workflow.init
    def __init__(self, order: PlaceOrderInput) -> None:
        self._input = order
        self._journal = Journal(received_view(order))
        self._holds = Holds(self._journal, handed_over=lambda: self._fulfilment.handed_over > 0)
        self._money = Money(self._journal, self._holds, order.timeouts)
        self._carrier = CarrierEvents(self._journal)
        self._backorder_filled: BackorderFilled | None = None
        self._returns = Returns(self._journal, self._money, self._holds, order, self._carrier.track)
        self._service = CustomerService(self._journal, self._money, self._holds, order)
        self._fulfilment = Fulfilment(
            order,
            self._journal,
            self._money,
            self._holds,
            self._returns,
            self._carrier,
            lambda: self._address,
        )

    @property
    def _view(self) -> OrderView:
        return self._journal.view

    @workflow.run
    async def run(self, order: PlaceOrderInput) -> OrderView:
        units = sum(item.quantity for item in order.items)
        self._journal.append("order_received", f"{units} item(s), {order.delivery} delivery")
        with contextlib.suppress(_OrderStopped):
            try:
                await self._process(order)
            except HoldRejected as rejected:
                # Every step after the first hand-over gives itself up in place; one before it
                # means the order cannot go on: it is cancelled, as a customer's cancel would.
                request = self._fulfilment.cancel_request
                await self._cancel(request.reason if request else rejected.reason)
        await workflow.wait_condition(workflow.all_handlers_finished)
        metrics.order_finished(self._view.status)
        return self._view

    # ---- stages ---------------------------------------------------------------------------

    async def _process(self, order: PlaceOrderInput) -> None:
        await self._verify_customer(order)
        await self._stop_if_cancel_requested()
        await self._reserve_stock(order)
        await self._stop_if_cancel_requested()
        totals = self._view.totals
        assert totals is not None
        awaited = self._view.backordered
        await self._journal.change_status(
            OrderStatus.CONFIRMED,
            "order_confirmed",
            f"total {money(totals.total)}"
            + (f"; backordered: {', '.join(awaited)}" if awaited else ""),
            summary=f"Confirmed: {rules.describe_lines(order.items)}, {money(totals.total)}"
            + (" (backordered)" if awaited else ""),
            email=EmailKind.CONFIRMATION,
        )
        await self._stop_if_cancel_requested()
        await self._authorize(order)
        await self._stop_if_cancel_requested()
        await self._review(order)
        await self._wait_for_backorder(order)
        await self._stop_if_cancel_requested()
        digital = [line for line in self._view.lines if line.digital]
        await self._journal.change_status(
            OrderStatus.FULFILLING,
            "fulfilment_started",
            f"{len(self._view.shipments)} parcel(s), {len(digital)} digital line(s)",
            summary="Fulfilling: "
            + (
                ", ".join(f"{s.shipment_id} from {s.warehouse}" for s in self._view.shipments)
                or "digital delivery"
            ),
        )
        outcomes = await self._fulfilment.run()
        await self._stop_if_cancel_requested()
        failure = await self._fulfilment.settle(outcomes)
        if failure is not None:
            await self._stop(OrderStatus.DELIVERY_FAILED, "delivery_failed", failure)
        await self._returns.return_window()
        await self._journal.change_status(
            OrderStatus.COMPLETED,
            "completed",
            "return window closed",
            summary="Completed: the return window closed",
        )

    async def _verify_customer(self, order: PlaceOrderInput) -> None:
        what = f"Verify customer {order.customer_id}"
        verify = VerifyCustomerInput(
            customer_id=order.customer_id, shipping_address=order.shipping_address
        )
        try:
            self._journal.customer = await self._holds.attempt(
                what,
                lambda: policies.local(
                    policies.DATABASE, CustomerActivities.verify_customer, verify, what
                ),
            )
        except (ActivityError, ApplicationError) as err:
            problem = policies.business_problem(err, CUSTOMER_REJECTED)
            if problem is None:
                raise
            await self._stop(OrderStatus.REJECTED, "customer_rejected", problem)
        self._view.shipping_address = self._address

    async def _reserve_stock(self, order: PlaceOrderInput) -> None:
        what = f"Reserve stock for {rules.describe_lines(order.items)}"
        reserve = ReserveStockInput(
            order_id=order.order_id,
            items=order.items,
            allow_backorder=True,
            placed_at=order.placed_at,
        )
        try:
            # Held before anything is reserved: a rejected hold cancels with nothing to free.
            reservation = await self._holds.attempt(
                what,
                lambda: policies.local(
                    policies.DATABASE, InventoryActivities.reserve_stock, reserve, what
                ),
            )
        except (ActivityError, ApplicationError) as err:
            problem = policies.business_problem(err, OUT_OF_STOCK, UNKNOWN_SKU)
            if problem is None:
                raise
            await self._stop(OrderStatus.REJECTED, "stock_unavailable", problem)
        self._view.lines = reservation.lines
        self._view.totals = order_totals(reservation.lines, order.delivery)
        if reservation.backordered:
            self._view.backordered = reservation.backordered
            self._fulfilment.stock_held = True  # its place in the backorder queue
            self._journal.append("backordered", ", ".join(reservation.backordered))
            return
        self._fulfilment.allocate(reservation.parcels)
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
            await self._fulfilment.release_stock()
            await self._stop(OrderStatus.PAYMENT_DECLINED, "payment_declined", problem)

    async def _review(self, order: PlaceOrderInput) -> None:
        """A person looks at a large or flagged order before anything is picked."""
        customer = self._journal.customer
        totals = self._view.totals
        assert customer is not None and totals is not None
        why = rules.review_reasons(
            totals.total, order.limits.risk_review_threshold, customer.review_required
        )
        if not why:
            return
        hold = await self._holds.place(
            HoldCode.RISK_REVIEW,
            "; ".join(why),
            decide_within=order.timeouts.review_timeout,
            timeout_reason="review_timeout",
        )
        if hold.resolution is HoldResolution.REJECTED:
            raise HoldRejected(hold)

    async def _wait_for_backorder(self, order: PlaceOrderInput) -> None:
        """Wait in the backorder queue until a stock receipt serves the whole order."""
        if self._backorder_filled is None and self._view.backordered:
            hold = await self._holds.place(
                HoldCode.BACKORDER,
                "waiting for " + ", ".join(self._view.backordered),
                decide_within=order.timeouts.backorder_timeout,
                timeout_reason="backorder_timeout",
            )
            if hold.resolution is HoldResolution.REJECTED:
                raise HoldRejected(hold)
        filled = self._backorder_filled
        if filled is None:
            return
        self._view.backordered = []
        self._fulfilment.allocate(filled.parcels)
        self._journal.append(
            "stock_reserved", f"receipt {filled.receipt_id}: {len(filled.parcels)} parcel(s)"
        )

    @workflow.signal(name=SIGNAL_BACKORDER_FILLED)
    def backorder_filled(self, filled: BackorderFilled) -> None:
        """A stock receipt now holds the order's units; a repeat changes nothing."""
        if self._backorder_filled is not None or not self._view.backordered:
            return
        self._backorder_filled = filled
        self._holds.resolve(
            HoldCode.BACKORDER, HoldResolution.RELEASED, f"stock arrived ({filled.receipt_id})"
        )

    # ---- stopping: cancellation and compensation ------------------------------------------

    async def _stop_if_cancel_requested(self) -> None:
        request = self._fulfilment.cancel_request
        if request is None or self._fulfilment.handed_over:
            return
        await self._cancel(request.reason)

    async def _cancel(self, reason: str) -> NoReturn:
        """Give back what the order holds and stop it, `cancelled` (or `payment_declined`, if
        its card authorization could not be renewed while it waited)."""
        await self._money.release(cancelled=True)
        await self._fulfilment.release_stock()
        declined = self._money.renewal_declined
        if declined is not None:
            await self._stop(OrderStatus.PAYMENT_DECLINED, "payment_declined", declined)
        await self._stop(
            OrderStatus.CANCELLED, "cancelled", Problem(code="cancelled", detail=reason)
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

    @workflow.signal(name=SIGNAL_CARRIER_EVENT)
    async def carrier_event(self, raw: RawValue) -> None:
        """A tracking event; duplicates, late older events and unreadable ones (noted on the
        timeline) change nothing. Read here rather than by the SDK, which would drop an
        unreadable one with only a log line."""
        event = self._carrier.read(raw)
        if event is None:
            if self._carrier.noting_unreadable:
                await self._journal.record("An unreadable carrier event was ignored")
            return
        parcel = self._carrier.receive(event)
        if parcel is not None:
            await self._journal.record(
                f"{parcel.shipment_id} {event.status.value.replace('_', ' ')}"
            )

    # ---- messages ---------------------------------------------------------------------------

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> OrderView:
        return self._view

    @workflow.update(name=UPDATE_CANCEL)
    async def cancel(self, request: CancelRequest) -> OrderView:
        if self._fulfilment.cancel_request is None:
            self._fulfilment.cancel(request)
            self._holds.reject_all("the order was cancelled")
            self._journal.append("cancel_requested", request.reason)
            await self._journal.record("Cancel requested")  # shown while it takes effect
        await workflow.wait_condition(lambda: self._view.status in FINAL_STATUSES)
        return self._view

    @cancel.validator
    def validate_cancel(self, request: CancelRequest) -> None:
        status = self._view.status
        if self._fulfilment.cancel_request is not None or status is OrderStatus.CANCELLED:
            return  # asking twice is answered with the same cancelled order
        if status not in CANCELLABLE_STATUSES or self._fulfilment.handed_over:
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
        return await self._returns.request_return(request, self._address)

    @request_return.validator
    def validate_return(self, request: ReturnRequest) -> None:
        self._returns.validate_return(request)

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

    @ask.validator
    def validate_ask(self, request: InquiryRequest) -> None:
        self._service.validate_ask(request)

    @workflow.update(name=UPDATE_RESOLVE_HOLD)
    async def resolve_hold(self, decision: HoldDecision) -> OrderView:
        """An operator's decision on a hold: released, the step runs again; rejected, it is
        given up as the order's stage allows."""
        return await self._holds.decide(decision)

    @resolve_hold.validator
    def validate_resolve_hold(self, decision: HoldDecision) -> None:
        self._holds.validate(decision)

    @workflow.update(name=UPDATE_FEEDBACK)
    async def give_feedback(self, request: FeedbackRequest) -> FeedbackView:
        return await self._service.give_feedback(request)

    @give_feedback.validator
    def validate_feedback(self, request: FeedbackRequest) -> None:
        self._service.validate_feedback(request)
