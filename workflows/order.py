"""OrderWorkflow: one order's whole life, from placement to the end of its return window.

Stages: verify customer -> reserve stock -> confirm -> authorize payment -> fulfil (pick/pack,
digital delivery) -> ship and capture -> await the carrier's delivery -> return window.
A cancel Update is honoured until the parcel is handed to the carrier; every stop releases
what the order held (stock, the card authorization) and tells the customer.

After delivery the order stays open for customer service until its return window closes:
returns (refund or exchange), refunds of digital lines, goodwill refunds, inquiries, feedback.
"""

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.customers import CustomerActivities
    from activities.downloads import DownloadActivities
    from activities.errors import (
        CUSTOMER_REJECTED,
        OUT_OF_STOCK,
        PAYMENT_DECLINED,
        UNKNOWN_SKU,
    )
    from activities.inventory import InventoryActivities
    from activities.notifications import NotificationActivities
    from activities.payments import PaymentActivities
    from activities.read_model import ReadModelActivities
    from activities.shipping import ShippingActivities
    from activities.warehouse import WarehouseActivities
    from models.activities import (
        AuthorizePaymentInput,
        BookShipmentInput,
        CapturePaymentInput,
        EmailKind,
        OrderRef,
        Parcel,
        PickPackInput,
        RecordOrderInput,
        RefundPaymentInput,
        ReserveStockInput,
        RestockInput,
        RevokeDownloadsInput,
        SendEmailInput,
        ShipmentDirection,
        SupportInquiryInput,
        VerifiedCustomer,
        VerifyCustomerInput,
        VoidPaymentInput,
    )
    from models.orders import (
        AFTER_DELIVERY_STATUSES,
        CANCELLABLE_STATUSES,
        CAPTURED_STATUSES,
        CARRIER_FINAL,
        CARRIER_PROGRESS,
        FINAL_STATUSES,
        OPEN_RETURN_STATUSES,
        CancelRequest,
        CarrierEvent,
        CarrierStatus,
        DeliveryOption,
        FeedbackRequest,
        FeedbackView,
        GoodwillRefundRequest,
        InquiryRequest,
        InquiryView,
        OrderItem,
        OrderLine,
        OrderStatus,
        OrderView,
        PlaceOrderInput,
        Problem,
        RefundKind,
        RefundView,
        ReturnLine,
        ReturnRequest,
        ReturnResolution,
        ReturnStatus,
        ReturnView,
        ShipmentView,
        TimelineEntry,
        money,
        order_totals,
        received_view,
    )
    from models.wire import (
        CUSTOMER_ID,
        ORDER_STATUS,
        ORDER_WORKFLOW,
        QUERY_STATUS,
        SIGNAL_CARRIER_EVENT,
        UPDATE_ASK,
        UPDATE_CANCEL,
        UPDATE_FEEDBACK,
        UPDATE_REFUND,
        UPDATE_REQUEST_RETURN,
    )

# Retry policies, one per kind of system. Business failures are raised non-retryable by the
# activities themselves, so these only ever retry outages.
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500), maximum_interval=timedelta(seconds=30)
)
PAYMENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
)
CARRIER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5)
)
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=10)
)
WAREHOUSE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5)
)


# Orders started after this patch run ordermill's own quick steps (its database, its emails) as
# local activities; orders started before it replay them as the activities they were.
LOCAL_STEPS = "local-steps"

StepInput = TypeVar("StepInput")
StepResult = TypeVar("StepResult")


class _OrderStopped(Exception):
    """Unwinds the stages once the order has reached a final status."""


@workflow.defn(name=ORDER_WORKFLOW)
class OrderWorkflow:
    @workflow.init
    def __init__(self, order: PlaceOrderInput) -> None:
        self._input = order
        self._view = received_view(order)
        self._version = 0
        self._customer: VerifiedCustomer | None = None
        self._stock_held = False
        self._authorize_key: str | None = None
        self._cancel_request: CancelRequest | None = None
        self._pick_pack: workflow.ActivityHandle[Parcel] | None = None
        self._handed_to_carrier = False
        self._seen_event_ids: set[str] = set()
        self._carrier_outcome: CarrierEvent | None = None
        self._awaiting_delivery = False
        self._unmatched_events: list[CarrierEvent] = []
        self._returns_arrived: set[str] = set()
        self._return_tasks: list[asyncio.Task[None]] = []
        self._window_closed = False
        self._money = asyncio.Lock()  # one refund at a time: never refund past the capture

    @workflow.run
    async def run(self, order: PlaceOrderInput) -> OrderView:
        await self._change_status(
            OrderStatus.RECEIVED,
            "order_received",
            f"{sum(i.quantity for i in order.items)} item(s), {order.delivery.value} delivery",
        )
        with contextlib.suppress(_OrderStopped):
            await self._process(order)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view

    @property
    def _local_steps(self) -> bool:
        """Whether this order runs its own steps as local activities (see LOCAL_STEPS).

        Asked wherever it matters, including handlers that may run before `run`: the SDK keeps
        the first answer for the rest of the order, and records the patch there. Never ask it
        in a query or a validator, where `workflow.patched` raises.
        """
        return workflow.patched(LOCAL_STEPS)

    # ---- stages ---------------------------------------------------------------------------

    async def _process(self, order: PlaceOrderInput) -> None:
        self._customer = await self._verify_customer(order)
        self._view.shipping_address = self._customer.shipping_address
        await self._stop_if_cancel_requested()

        lines = await self._reserve_stock(order)
        await self._stop_if_cancel_requested()

        totals = self._view.totals
        assert totals is not None
        await self._change_status(
            OrderStatus.CONFIRMED, "order_confirmed", f"total {money(totals.total)}"
        )
        await self._email(EmailKind.CONFIRMATION)
        await self._stop_if_cancel_requested()

        await self._authorize_payment(order)
        await self._stop_if_cancel_requested()

        physical = [line for line in lines if not line.digital]
        digital = [line for line in lines if line.digital]
        await self._change_status(
            OrderStatus.FULFILLING,
            "fulfilment_started",
            f"{len(physical)} physical, {len(digital)} digital line(s)",
        )
        parcel = await self._pick_and_pack(physical) if physical else None
        await self._stop_if_cancel_requested()
        self._handed_to_carrier = True  # from here on the order can no longer be cancelled

        if digital:
            await self._email(EmailKind.DIGITAL_DELIVERY)
            await self._note("digital_delivery_sent", ", ".join(line.sku for line in digital))

        if parcel is None:
            await self._capture_payment()
            await self._delivered("digital delivery")
        else:
            await self._ship(parcel)
            await self._await_delivery()
        await self._return_window()

    async def _verify_customer(self, order: PlaceOrderInput) -> VerifiedCustomer:
        try:
            return await self._step(
                CustomerActivities.verify_customer,
                VerifyCustomerInput(
                    customer_id=order.customer_id, shipping_address=order.shipping_address
                ),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=DATABASE_RETRY,
                summary=f"Verify customer {order.customer_id}",
            )
        except (ActivityError, ApplicationError) as err:
            problem = _business_problem(err, CUSTOMER_REJECTED)
            if problem is None:
                raise
            await self._stop(OrderStatus.REJECTED, "customer_rejected", problem)
            raise  # unreachable: _stop raises

    async def _reserve_stock(self, order: PlaceOrderInput) -> list[OrderLine]:
        try:
            reservation = await self._step(
                InventoryActivities.reserve_stock,
                ReserveStockInput(order_id=order.order_id, items=order.items),
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=DATABASE_RETRY,
                summary="Reserve stock for "
                + ", ".join(f"{i.quantity}x {i.sku}" for i in order.items[:5])
                + (" ..." if len(order.items) > 5 else ""),
            )
        except (ActivityError, ApplicationError) as err:
            problem = _business_problem(err, OUT_OF_STOCK, UNKNOWN_SKU)
            if problem is None:
                raise
            await self._stop(OrderStatus.REJECTED, "stock_unavailable", problem)
            raise
        self._stock_held = True
        self._view.lines = reservation.lines
        self._view.totals = order_totals(reservation.lines, order.delivery)
        await self._note_before_status("stock_reserved", f"{len(reservation.lines)} line(s) held")
        return reservation.lines

    async def _authorize_payment(self, order: PlaceOrderInput) -> None:
        totals = self._view.totals
        assert totals is not None
        self._authorize_key = str(workflow.uuid4())
        try:
            authorization = await workflow.execute_activity_method(
                PaymentActivities.authorize_payment,
                AuthorizePaymentInput(
                    order_id=order.order_id,
                    token=order.payment.token,
                    amount=totals.total,
                    currency=totals.currency,
                    idempotency_key=self._authorize_key,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PAYMENT_RETRY,
                summary=f"Authorize {money(totals.total, totals.currency)}",
            )
        except ActivityError as err:
            problem = _business_problem(err, PAYMENT_DECLINED)
            if problem is None:
                raise
            await self._release_stock()
            await self._stop(OrderStatus.PAYMENT_DECLINED, "payment_declined", problem)
            raise
        self._view.payment.authorization_id = authorization.authorization_id
        self._view.payment.authorized = authorization.amount
        await self._note_before_status(
            "payment_authorized", money(authorization.amount, totals.currency)
        )

    async def _pick_and_pack(self, physical: list[OrderLine]) -> Parcel | None:
        self._pick_pack = workflow.start_activity_method(
            WarehouseActivities.pick_and_pack,
            PickPackInput(order_id=self._view.order_id, lines=physical),
            start_to_close_timeout=timedelta(hours=4),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=WAREHOUSE_RETRY,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"Pick and pack {sum(line.quantity for line in physical)} unit(s)",
        )
        try:
            parcel = await self._pick_pack
        except ActivityError as err:
            if self._cancel_request is not None and isinstance(err.cause, CancelledError):
                return None  # the cancel Update stopped the warehouse; _stop_if_... takes over
            raise
        finally:
            self._pick_pack = None
        await self._note("packed", f"parcel {parcel.parcel_id}, {parcel.items} unit(s)")
        return parcel

    async def _book_shipment(self, parcel_id: str, direction: ShipmentDirection) -> ShipmentView:
        assert self._customer is not None
        delivery = (
            self._view.delivery
            if direction is ShipmentDirection.OUTBOUND
            else DeliveryOption.STANDARD
        )
        booked = await workflow.execute_activity_method(
            ShippingActivities.book_shipment,
            BookShipmentInput(
                order_id=self._view.order_id,
                parcel_id=parcel_id,
                delivery=delivery,
                address=self._customer.shipping_address,
                idempotency_key=str(workflow.uuid4()),
                direction=direction,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=CARRIER_RETRY,
            summary=f"Book {direction.value} {delivery.value} shipment for {parcel_id}",
        )
        return ShipmentView(carrier=booked.carrier, tracking_number=booked.tracking_number)

    async def _ship(self, parcel: Parcel) -> None:
        booked = await self._book_shipment(parcel.parcel_id, ShipmentDirection.OUTBOUND)
        self._view.shipment = booked
        await self._step(
            InventoryActivities.commit_stock,
            OrderRef(order_id=self._view.order_id),
            start_to_close_timeout=timedelta(seconds=15),
            retry_policy=DATABASE_RETRY,
            summary="Commit shipped stock",
        )
        self._stock_held = False
        await self._capture_payment()
        await self._change_status(
            OrderStatus.SHIPPED, "shipped", f"{booked.carrier} {booked.tracking_number}"
        )
        await self._email(EmailKind.SHIPPED)
        await self._replay_unmatched_events()

    async def _capture_payment(self) -> None:
        payment = self._view.payment
        assert payment.authorization_id is not None
        result = await workflow.execute_activity_method(
            PaymentActivities.capture_payment,
            CapturePaymentInput(
                order_id=self._view.order_id,
                authorization_id=payment.authorization_id,
                amount=payment.authorized,
                idempotency_key=str(workflow.uuid4()),
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PAYMENT_RETRY,
            summary=f"Capture {money(payment.authorized)}",
        )
        payment.captured = result.amount
        await self._note_before_status("payment_captured", money(result.amount))

    async def _await_delivery(self) -> None:
        timeout = self._input.timeouts.delivery_timeout
        self._awaiting_delivery = True
        try:
            await workflow.wait_condition(
                lambda: self._carrier_outcome is not None,
                timeout=timeout,
                timeout_summary="delivery deadline",
            )
            timed_out = False
        except TimeoutError:
            timed_out = True
        finally:
            self._awaiting_delivery = False
        if timed_out:
            await self._delivery_failed(
                Problem(code="delivery_timeout", detail=f"not delivered within {timeout}")
            )
        outcome = self._carrier_outcome
        assert outcome is not None
        if outcome.status is CarrierStatus.DELIVERED:
            await self._delivered(f"{outcome.tracking_number} delivered")
        else:
            await self._delivery_failed(
                Problem(code=outcome.status.value, detail=outcome.description or outcome.status)
            )

    async def _delivered(self, detail: str) -> None:
        now = workflow.now()
        self._view.delivered_at = now
        self._view.return_window_ends_at = now + self._input.timeouts.return_window
        await self._change_status(OrderStatus.DELIVERED, "delivered", detail)
        await self._email(EmailKind.DELIVERED)

    async def _delivery_failed(self, problem: Problem) -> None:
        payment = self._view.payment
        await self._refund(
            payment.captured - payment.refunded, RefundKind.DELIVERY_FAILED, problem.code
        )
        await self._stop(OrderStatus.DELIVERY_FAILED, "delivery_failed", problem)

    async def _return_window(self) -> None:
        await workflow.sleep(self._input.timeouts.return_window, summary="return window")
        self._window_closed = True
        await workflow.wait_condition(
            lambda: all(r.status not in OPEN_RETURN_STATUSES for r in self._view.returns)
        )
        await asyncio.gather(*self._return_tasks)
        await self._change_status(OrderStatus.COMPLETED, "completed", "return window closed")

    # ---- customer service: returns, refunds, inquiries, feedback ----------------------------

    async def _follow_return(self, ret: ReturnView) -> None:
        """From return label to outcome: wait for the parcel, restock, then refund or exchange."""
        try:
            await workflow.wait_condition(
                lambda: ret.return_id in self._returns_arrived,
                timeout=self._input.timeouts.return_arrival_timeout,
                timeout_summary=f"{ret.return_id} parcel arrival",
            )
        except TimeoutError:
            ret.status = ReturnStatus.NOT_RECEIVED
            ret.closed_at = workflow.now()
            await self._note("return_not_received", f"{ret.return_id} {ret.tracking_number}")
            await self._email(EmailKind.RETURN_NOT_RECEIVED, reference=ret.return_id)
            return
        ret.status = ReturnStatus.RECEIVED
        await self._note("return_received", ret.return_id)
        await self._step(
            InventoryActivities.restock,
            RestockInput(order_id=self._view.order_id, return_id=ret.return_id, lines=ret.lines),
            start_to_close_timeout=timedelta(seconds=15),
            retry_policy=DATABASE_RETRY,
            summary=f"Restock {ret.return_id}",
        )
        if ret.resolution is ReturnResolution.EXCHANGE and await self._ship_exchange(ret):
            return
        await self._refund_return(ret)

    async def _refund_return(self, ret: ReturnView) -> None:
        refund = await self._refund(
            self._value_of(ret.lines), RefundKind.RETURN, ret.reason.value, ret.return_id
        )
        ret.refund_amount = refund.amount if refund else 0
        ret.status = ReturnStatus.REFUNDED
        ret.closed_at = workflow.now()
        await self._refresh_return_status(ret)
        await self._email(EmailKind.RETURN_REFUNDED, reference=ret.return_id)

    async def _ship_exchange(self, ret: ReturnView) -> bool:
        """Send the same items again at no charge; False if they are out of stock."""
        exchange_id = f"{self._view.order_id}-{ret.return_id}"
        items = [OrderItem(sku=line.sku, quantity=line.quantity) for line in ret.lines]
        try:
            reservation = await self._step(
                InventoryActivities.reserve_stock,
                ReserveStockInput(order_id=exchange_id, items=items),
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=DATABASE_RETRY,
                summary=f"Reserve exchange stock for {ret.return_id}",
            )
        except (ActivityError, ApplicationError) as err:
            if _business_problem(err, OUT_OF_STOCK, UNKNOWN_SKU) is None:
                raise
            await self._note("exchange_unavailable", f"{ret.return_id}: refunding instead")
            return False
        parcel = await workflow.execute_activity_method(
            WarehouseActivities.pick_and_pack,
            PickPackInput(order_id=exchange_id, lines=reservation.lines),
            start_to_close_timeout=timedelta(hours=4),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=WAREHOUSE_RETRY,
            summary=f"Pick and pack exchange for {ret.return_id}",
        )
        booked = await self._book_shipment(parcel.parcel_id, ShipmentDirection.OUTBOUND)
        await self._step(
            InventoryActivities.commit_stock,
            OrderRef(order_id=exchange_id),
            start_to_close_timeout=timedelta(seconds=15),
            retry_policy=DATABASE_RETRY,
            summary="Commit exchange stock",
        )
        ret.exchange_shipment = booked
        ret.status = ReturnStatus.EXCHANGE_SHIPPED
        await self._note("exchange_shipped", f"{ret.return_id} {booked.tracking_number}")
        await self._email(EmailKind.EXCHANGE_SHIPPED, reference=ret.return_id)
        await self._replay_unmatched_events()
        with contextlib.suppress(TimeoutError):  # not delivered in time: refunded below
            await workflow.wait_condition(
                lambda: booked.status in CARRIER_FINAL,
                timeout=self._input.timeouts.delivery_timeout,
                timeout_summary=f"{ret.return_id} exchange delivery",
            )
        if booked.status is CarrierStatus.DELIVERED:
            ret.status = ReturnStatus.EXCHANGE_DELIVERED
            ret.closed_at = workflow.now()
            await self._note("exchange_delivered", ret.return_id)
            return True
        await self._note("exchange_not_delivered", f"{ret.return_id}: refunding instead")
        return False

    async def _refund(
        self,
        amount: int,
        kind: RefundKind,
        reason: str,
        return_id: str | None = None,
        *,
        exact: bool = False,
    ) -> RefundView | None:
        """Refund up to `amount`, never past what is left of the capture; None if nothing is.

        `exact` (an operator's goodwill amount) refuses rather than refund less: the bound is
        checked here, under the lock, because a refund that passed its validator may have
        waited here while another one took the money.
        """
        async with self._money:
            payment = self._view.payment
            left = payment.captured - payment.refunded
            if exact and amount > left:
                _refuse("RefundRefused", _refund_bound(left))
            amount = min(amount, left)
            if amount <= 0 or payment.authorization_id is None:
                return None
            await workflow.execute_activity_method(
                PaymentActivities.refund_payment,
                RefundPaymentInput(
                    order_id=self._view.order_id,
                    authorization_id=payment.authorization_id,
                    amount=amount,
                    reason=reason,
                    idempotency_key=str(workflow.uuid4()),
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PAYMENT_RETRY,
                summary=f"Refund {money(amount)} ({kind.value}: {reason})",
            )
            payment.refunded += amount
            refund = RefundView(
                refund_id=f"RF-{len(self._view.refunds) + 1}",
                kind=kind,
                amount=amount,
                reason=reason,
                at=workflow.now(),
                return_id=return_id,
            )
            self._view.refunds.append(refund)
            await self._note("payment_refunded", f"{money(amount)} ({kind.value})")
            return refund

    async def _refresh_return_status(self, ret: ReturnView) -> None:
        ordered = sum(line.quantity for line in self._view.lines)
        refunded = sum(
            line.quantity
            for r in self._view.returns
            if r.status is ReturnStatus.REFUNDED
            for line in r.lines
        )
        status = OrderStatus.RETURNED if refunded >= ordered else OrderStatus.PARTIALLY_RETURNED
        detail = f"{ret.return_id}: {money(ret.refund_amount)} refunded"
        if status is not self._view.status:
            await self._change_status(status, status.value, detail)
        else:
            await self._note("return_refunded", detail)

    def _value_of(self, lines: list[ReturnLine]) -> int:
        prices = {line.sku: line.unit_price for line in self._view.lines}
        return sum(prices[line.sku] * line.quantity for line in lines)

    def _returnable(self, sku: str) -> int:
        delivered = sum(line.quantity for line in self._view.lines if line.sku == sku)
        returned = sum(
            line.quantity
            for r in self._view.returns
            if r.status is not ReturnStatus.NOT_RECEIVED
            for line in r.lines
            if line.sku == sku
        )
        return delivered - returned

    # ---- stopping: cancellation and compensation ------------------------------------------

    async def _stop_if_cancel_requested(self) -> None:
        request = self._cancel_request
        if request is None:
            return
        if self._authorize_key is not None:
            await workflow.execute_activity_method(
                PaymentActivities.void_payment,
                VoidPaymentInput(
                    order_id=self._view.order_id,
                    authorize_key=self._authorize_key,
                    idempotency_key=str(workflow.uuid4()),
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PAYMENT_RETRY,
                summary="Void the card authorization",
            )
            self._view.payment.voided = True
            await self._note("payment_voided", money(self._view.payment.authorized))
        await self._release_stock()
        await self._stop(
            OrderStatus.CANCELLED,
            "cancelled",
            Problem(code="cancelled", detail=request.reason),
        )

    async def _release_stock(self) -> None:
        if not self._stock_held:
            return
        await self._step(
            InventoryActivities.release_stock,
            OrderRef(order_id=self._view.order_id),
            start_to_close_timeout=timedelta(seconds=15),
            retry_policy=DATABASE_RETRY,
            summary="Release reserved stock",
        )
        self._stock_held = False
        await self._note("stock_released", "")

    async def _stop(self, status: OrderStatus, event: str, problem: Problem) -> None:
        """Put the order in a final status, tell the customer, and unwind the stages."""
        self._view.reason = problem
        await self._change_status(status, event, f"{problem.code}: {problem.detail}")
        email = {
            OrderStatus.PAYMENT_DECLINED: EmailKind.PAYMENT_DECLINED,
            OrderStatus.CANCELLED: EmailKind.CANCELLED,
            OrderStatus.DELIVERY_FAILED: EmailKind.DELIVERY_FAILED,
        }.get(status)
        if status is OrderStatus.REJECTED:
            email = EmailKind.REJECTED
        if email is not None and self._customer is not None:
            await self._email(email)
        raise _OrderStopped

    # ---- messages ---------------------------------------------------------------------------

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> OrderView:
        return self._view

    @workflow.signal(name=SIGNAL_CARRIER_EVENT)
    async def carrier_event(self, event: CarrierEvent) -> None:
        """A carrier tracking event; duplicates and late, older events change nothing."""
        if event.event_id in self._seen_event_ids:
            return
        self._seen_event_ids.add(event.event_id)
        if self._apply_carrier_event(event):
            if (
                self._local_steps
                and self._awaiting_delivery
                and self._carrier_outcome is event
                and event.status is CarrierStatus.DELIVERED
            ):
                return  # the waiting order becomes `delivered` at once; that change records it
            await self._record()

    def _apply_carrier_event(self, event: CarrierEvent) -> bool:
        """Route the event to the shipment, return or exchange it tracks.

        An event for a tracking number the order does not know yet (it beat the booking reply)
        is kept and applied once the booking is recorded.
        """
        view = self._view
        shipment = view.shipment
        if shipment is not None and event.tracking_number == shipment.tracking_number:
            _track(shipment, event)
            # A final event that beats the `shipped` status (it came during the capture) is
            # kept for the wait that follows.
            if (
                event.status in CARRIER_FINAL
                and self._carrier_outcome is None
                and (view.status is OrderStatus.SHIPPED or self._local_steps)
            ):
                self._carrier_outcome = event
            self._append_timeline(f"carrier_{event.status.value}", event.description or "")
            self._publish_details()
            return True
        for ret in view.returns:
            if event.tracking_number == ret.tracking_number:
                if event.status is CarrierStatus.DELIVERED:
                    self._returns_arrived.add(ret.return_id)
                self._append_timeline(
                    f"return_carrier_{event.status.value}", f"{ret.return_id} {event.event_id}"
                )
                return True
            exchange = ret.exchange_shipment
            if exchange is not None and event.tracking_number == exchange.tracking_number:
                _track(exchange, event)
                self._append_timeline(
                    f"exchange_carrier_{event.status.value}", f"{ret.return_id} {event.event_id}"
                )
                return True
        self._unmatched_events.append(event)
        return False

    async def _replay_unmatched_events(self) -> None:
        pending, self._unmatched_events = self._unmatched_events, []
        applied = [self._apply_carrier_event(event) for event in pending]
        if any(applied) and self._local_steps:
            await self._record()

    @workflow.update(name=UPDATE_CANCEL)
    async def cancel(self, request: CancelRequest) -> OrderView:
        if self._cancel_request is None:
            self._cancel_request = request
            self._append_timeline("cancel_requested", request.reason)
            if self._pick_pack is not None:
                self._pick_pack.cancel()
            if self._local_steps:
                await self._record()  # the read model shows the cancel while it takes effect
        await workflow.wait_condition(lambda: self._view.status in FINAL_STATUSES)
        return self._view

    @cancel.validator
    def validate_cancel(self, request: CancelRequest) -> None:
        if self._cancel_request is not None or self._view.status is OrderStatus.CANCELLED:
            return  # asking twice is answered with the same cancelled order
        if self._view.status not in CANCELLABLE_STATUSES or self._handed_to_carrier:
            # Between packing and the shipping label the status is still `fulfilling`; past
            # that, the status itself (shipped, delivered, ...) is the truthful answer.
            status = self._view.status
            shown = "handed to the carrier" if status in CANCELLABLE_STATUSES else status.value
            raise ApplicationError(
                f"order {self._view.order_id} can no longer be cancelled: it is {shown}",
                status.value,
                type="CancelRefused",
            )

    @workflow.update(name=UPDATE_REQUEST_RETURN)
    async def request_return(self, request: ReturnRequest) -> ReturnView:
        lines = _merge_lines(request.lines)
        ordered = {line.sku: line for line in self._view.lines}
        ret = ReturnView(
            return_id=f"RET-{len(self._view.returns) + 1}",
            lines=lines,
            reason=request.reason,
            resolution=request.resolution,
            status=ReturnStatus.AWAITING_PARCEL,
            digital=ordered[lines[0].sku].digital,
            requested_at=workflow.now(),
        )
        self._view.returns.append(ret)
        summary = ", ".join(f"{line.quantity}x {line.sku}" for line in lines)
        await self._note("return_requested", f"{ret.return_id}: {summary} ({request.reason})")
        if ret.digital:
            await self._step(
                DownloadActivities.revoke_downloads,
                RevokeDownloadsInput(
                    order_id=self._view.order_id, skus=[line.sku for line in lines]
                ),
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=DATABASE_RETRY,
                summary=f"Revoke downloads for {ret.return_id}",
            )
            await self._refund_return(ret)
            return ret
        label = await self._book_shipment(f"{ret.return_id}-parcel", ShipmentDirection.RETURN)
        ret.tracking_number = label.tracking_number
        await self._note("return_label_issued", f"{ret.return_id} {label.tracking_number}")
        await self._email(EmailKind.RETURN_LABEL, reference=ret.return_id)
        self._return_tasks.append(asyncio.create_task(self._follow_return(ret)))
        await self._replay_unmatched_events()
        return ret

    @request_return.validator
    def validate_return(self, request: ReturnRequest) -> None:
        view = self._view
        if view.status not in AFTER_DELIVERY_STATUSES or view.return_window_ends_at is None:
            _refuse("ReturnRefused", f"only a delivered order can be returned; it is {view.status}")
        if self._window_closed or workflow.now() > view.return_window_ends_at:
            _refuse(
                "ReturnRefused",
                f"the return window closed on {view.return_window_ends_at:%Y-%m-%d %H:%M} UTC",
            )
        lines = {line.sku: line for line in view.lines}
        for line in _merge_lines(request.lines):
            if line.sku not in lines:
                _refuse("ReturnRefused", f"{line.sku} is not part of this order")
            left = self._returnable(line.sku)
            if line.quantity > left:
                _refuse(
                    "ReturnRefused",
                    f"only {left} of {line.sku} can still be returned, not {line.quantity}",
                )
        kinds = {lines[line.sku].digital for line in request.lines}
        if len(kinds) > 1:
            _refuse("ReturnRefused", "return digital and physical items separately")
        if kinds == {True} and request.resolution is ReturnResolution.EXCHANGE:
            _refuse("ReturnRefused", "digital items can be refunded, not exchanged")

    @workflow.update(name=UPDATE_REFUND)
    async def refund(self, request: GoodwillRefundRequest) -> RefundView:
        """An operator's goodwill refund, bounded by what is left of the capture."""
        refund = await self._refund(request.amount, RefundKind.GOODWILL, request.reason, exact=True)
        assert refund is not None
        await self._email(EmailKind.REFUND_ISSUED, reference=refund.refund_id)
        return refund

    @refund.validator
    def validate_refund(self, request: GoodwillRefundRequest) -> None:
        if self._view.status not in CAPTURED_STATUSES:
            _refuse("RefundRefused", f"nothing was charged yet; the order is {self._view.status}")
        payment = self._view.payment
        left = payment.captured - payment.refunded
        if request.amount > left:
            _refuse("RefundRefused", _refund_bound(left))

    @workflow.update(name=UPDATE_ASK)
    async def ask(self, request: InquiryRequest) -> InquiryView:
        """A customer's question: on the timeline, and to the support mailbox."""
        inquiry = InquiryView(
            inquiry_id=f"Q-{len(self._view.inquiries) + 1}",
            message=request.message,
            at=workflow.now(),
        )
        self._view.inquiries.append(inquiry)
        await self._note("inquiry", f"{inquiry.inquiry_id}: {request.message[:80]}")
        await self._step(
            NotificationActivities.notify_support,
            SupportInquiryInput(
                idempotency_key=f"{self._view.order_id}:inquiry:{inquiry.inquiry_id}",
                customer_email=self._customer.email if self._customer else "",
                inquiry=inquiry,
                order=self._view,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=EMAIL_RETRY,
            summary=f"Forward {inquiry.inquiry_id} to support",
        )
        return inquiry

    @workflow.update(name=UPDATE_FEEDBACK)
    async def give_feedback(self, request: FeedbackRequest) -> FeedbackView:
        self._view.feedback = FeedbackView(
            rating=request.rating, comment=request.comment, at=workflow.now()
        )
        await self._note("feedback", f"{request.rating}/5")
        return self._view.feedback

    @give_feedback.validator
    def validate_feedback(self, request: FeedbackRequest) -> None:
        if self._view.delivered_at is None:
            _refuse("FeedbackRefused", "feedback opens once the order is delivered")
        if self._view.feedback is not None:
            _refuse("FeedbackRefused", "feedback was already given for this order")

    # ---- bookkeeping --------------------------------------------------------------------------

    async def _change_status(self, status: OrderStatus, event: str, detail: str) -> None:
        self._view.status = status
        # The API starts every order with these attributes set to `received`.
        if not (self._local_steps and status is OrderStatus.RECEIVED):
            workflow.upsert_search_attributes(
                [
                    ORDER_STATUS.value_set(status.value),
                    CUSTOMER_ID.value_set(self._view.customer_id),
                ]
            )
        self._append_timeline(event, detail)
        self._publish_details()
        await self._record()

    async def _note(self, event: str, detail: str) -> None:
        """A timeline entry that does not change the status."""
        self._append_timeline(event, detail)
        await self._record()

    async def _note_before_status(self, event: str, detail: str) -> None:
        """A timeline entry that a status change follows at once, recorded with it.

        Unless a cancel is pending: the order then stops instead, after remote calls (a void)
        that may take a while, so the entry is recorded now.
        """
        if self._local_steps and self._cancel_request is None:
            self._append_timeline(event, detail)
        else:
            await self._note(event, detail)

    def _append_timeline(self, event: str, detail: str) -> None:
        now = workflow.now()
        self._view.updated_at = now
        self._view.timeline.append(
            TimelineEntry(at=now, event=event, status=self._view.status, detail=detail)
        )

    def _publish_details(self) -> None:
        view = self._view
        parts = [f"**{view.status.value}**"]
        if view.totals:
            parts.append(money(view.totals.total, view.totals.currency))
        if view.shipment:
            parts.append(f"tracking {view.shipment.tracking_number}")
        if view.reason:
            parts.append(f"reason `{view.reason.code}`")
        workflow.set_current_details(" · ".join(parts))

    async def _record(self) -> None:
        self._version += 1
        await workflow.execute_local_activity_method(
            ReadModelActivities.record_order,
            RecordOrderInput(order=self._view, version=self._version),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=DATABASE_RETRY,
            summary=f"Record {self._view.status.value}: {self._view.timeline[-1].event}"
            if self._view.timeline
            else f"Record {self._view.status.value}",
        )

    async def _step(
        self,
        activity: Callable[[Any, StepInput], StepResult],
        arg: StepInput,
        *,
        start_to_close_timeout: timedelta,
        retry_policy: RetryPolicy,
        summary: str,
    ) -> StepResult:
        """One of ordermill's own quick steps: its database, its emails.

        A local activity runs inside the order's workflow task, with no round trip through the
        server: the activities that stay remote are the outside systems (card processor,
        warehouse, carrier), which need the server's queues, timeouts and heartbeats.
        """
        if self._local_steps:
            return await workflow.execute_local_activity_method(
                activity,
                arg,
                start_to_close_timeout=start_to_close_timeout,
                retry_policy=retry_policy,
                summary=summary,
            )
        return await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=start_to_close_timeout,
            retry_policy=retry_policy,
            summary=summary,
        )

    async def _email(self, kind: EmailKind, *, reference: str | None = None) -> None:
        assert self._customer is not None
        key = f"{self._view.order_id}:{kind.value}" + (f":{reference}" if reference else "")
        await self._step(
            NotificationActivities.send_email,
            SendEmailInput(
                idempotency_key=key,
                kind=kind,
                to=self._customer.email,
                customer_name=self._customer.name,
                order=self._view,
                reference=reference,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=EMAIL_RETRY,
            summary=f"Email {kind.value} to customer",
        )


def _business_problem(err: ActivityError | ApplicationError, *error_types: str) -> Problem | None:
    """The reason behind a non-retryable business failure of one of `error_types`, if it is one.

    A remote activity's failure arrives as an ActivityError around it, a local one's as itself.
    """
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type in error_types:
        code = str(cause.details[0]) if cause.details else (cause.type or "failed")
        return Problem(code=code, detail=cause.message)
    return None


def _track(shipment: ShipmentView, event: CarrierEvent) -> None:
    """Add the event to the shipment; its status only ever moves forward."""
    shipment.events.append(event)
    shipment.events.sort(key=lambda e: e.occurred_at)
    current = CARRIER_PROGRESS[shipment.status] if shipment.status else 0
    if CARRIER_PROGRESS[event.status] > current:
        shipment.status = event.status


def _merge_lines(lines: list[ReturnLine]) -> list[ReturnLine]:
    merged: dict[str, int] = {}
    for line in lines:
        merged[line.sku] = merged.get(line.sku, 0) + line.quantity
    return [ReturnLine(sku=sku, quantity=quantity) for sku, quantity in merged.items()]


def _refuse(error_type: str, message: str) -> NoReturn:
    """Refuse an Update: the caller gets the message, the order is unchanged."""
    raise ApplicationError(message, type=error_type, non_retryable=True)


def _refund_bound(left: int) -> str:
    return f"at most {money(left)} is left to refund"
