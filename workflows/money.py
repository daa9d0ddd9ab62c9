"""The only place an order's money moves: authorize, capture per parcel, release, refund.

One live authorization per order; each parcel's capture at its hand-over, with its own
idempotency key; never more captured than authorized, never more refunded than captured. All of
it under one lock, because an Update's refund may wait here while a parcel's capture runs.
"""

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from activities.errors import PAYMENT_DECLINED, REFUND_REFUSED
from activities.payments import PaymentActivities
from models.activities import (
    AuthorizePaymentInput,
    CapturePaymentInput,
    RefundPaymentInput,
    VoidPaymentInput,
)
from models.orders import CaptureView, HoldCode, PaymentSummary, RefundKind, RefundView, money
from workflows import policies, rules
from workflows.holds import HoldRejected, Holds
from workflows.journal import Journal


class Money:
    def __init__(self, journal: Journal, holds: Holds) -> None:
        self._journal = journal
        self._holds = holds
        self._authorize_key: str | None = None
        self._lock = asyncio.Lock()

    @property
    def payment(self) -> PaymentSummary:
        return self._journal.view.payment

    @property
    def uncaptured(self) -> int:
        payment = self.payment
        return payment.authorized - payment.captured - payment.released

    async def authorize(self, token: str) -> None:
        """Raises the activity's error on a decline; the order decides what that means."""
        view = self._journal.view
        totals = view.totals
        assert totals is not None
        key = self._authorize_key = str(workflow.uuid4())
        what = f"Authorize {money(totals.total, totals.currency)}"
        authorization = await self._holds.attempt(
            what,
            lambda: policies.remote(
                policies.PAYMENT,
                PaymentActivities.authorize_payment,
                AuthorizePaymentInput(
                    order_id=view.order_id,
                    token=token,
                    amount=totals.total,
                    currency=totals.currency,
                    idempotency_key=key,
                ),
                what,
            ),
        )
        self.payment.authorization_id = authorization.authorization_id
        self.payment.authorized = authorization.amount
        self._journal.append("payment_authorized", money(authorization.amount, totals.currency))

    async def capture(self, amount: int, shipment_id: str | None) -> None:
        """Take a parcel's share; bounded by what the authorization still holds.

        A decline holds the order (`capture_declined`): released, the capture is tried again
        under a new key (the declined one stays declined); rejected, the amount is written off.
        """
        async with self._lock:
            amount = min(amount, self.uncaptured)
            payment = self.payment
            authorization_id = payment.authorization_id
            if amount <= 0 or authorization_id is None:
                return
            what = f"Capture {money(amount)} for {shipment_id or 'the order'}"
            keys = [str(workflow.uuid4())]

            def renew_after(code: HoldCode) -> None:
                if code is HoldCode.CAPTURE_DECLINED:
                    keys.append(str(workflow.uuid4()))

            try:
                result = await self._holds.attempt(
                    what,
                    lambda: policies.remote(
                        policies.PAYMENT,
                        PaymentActivities.capture_payment,
                        CapturePaymentInput(
                            order_id=self._journal.view.order_id,
                            authorization_id=authorization_id,
                            amount=amount,
                            idempotency_key=keys[-1],
                            shipment_id=shipment_id,
                        ),
                        what,
                    ),
                    declined={PAYMENT_DECLINED: HoldCode.CAPTURE_DECLINED},
                    after_hold=renew_after,
                )
            except HoldRejected as rejected:
                payment.written_off += amount
                self._journal.append(
                    "capture_written_off", f"{money(amount)} {shipment_id}: {rejected.hold.reason}"
                )
                return
            payment.captured += result.amount
            payment.captures.append(
                CaptureView(
                    capture_id=result.transaction_id or f"CAP-{len(payment.captures) + 1}",
                    shipment_id=shipment_id,
                    amount=result.amount,
                    at=workflow.now(),
                )
            )
            self._journal.append("payment_captured", f"{money(result.amount)} {shipment_id}")

    async def release(self, *, cancelled: bool) -> None:
        """Give back what the authorization holds uncaptured: all of it on a cancel."""
        async with self._lock:
            authorize_key = self._authorize_key
            if authorize_key is None or (not cancelled and self.uncaptured <= 0):
                return
            what = "Void the card authorization" if cancelled else "Release the uncaptured rest"
            key = str(workflow.uuid4())
            try:
                result = await self._holds.attempt(
                    what,
                    lambda: policies.remote(
                        policies.PAYMENT,
                        PaymentActivities.void_payment,
                        VoidPaymentInput(
                            order_id=self._journal.view.order_id,
                            authorize_key=authorize_key,
                            idempotency_key=key,
                        ),
                        what,
                    ),
                )
            except HoldRejected:
                return  # an authorization nobody captures lapses at the processor by itself
            self.payment.released += result.amount
            self.payment.voided = cancelled
            self._journal.append(
                "payment_voided" if cancelled else "payment_released", money(result.amount)
            )

    async def refund(
        self,
        amount: int,
        kind: RefundKind,
        reason: str,
        return_id: str | None = None,
        *,
        exact: bool = False,
    ) -> RefundView | None:
        """Refund up to `amount`, never past what is left of the captures; None if nothing is.

        `exact` (an operator's goodwill amount) refuses rather than refund less: the bound is
        checked here, under the lock, because a refund that passed its validator may have
        waited here while another one took the money.
        """
        async with self._lock:
            payment = self.payment
            left = payment.captured - payment.refunded
            if exact and amount > left:
                raise ApplicationError(
                    rules.refund_bound(left), type="RefundRefused", non_retryable=True
                )
            amount = min(amount, left)
            if amount <= 0 or payment.authorization_id is None:
                return None
            authorization_id = payment.authorization_id
            what = f"Refund {money(amount)} " + (f"for {return_id} " if return_id else "")
            what += f"({kind.value}: {reason})"
            keys = [str(workflow.uuid4())]

            def renew_after(code: HoldCode) -> None:
                if code is HoldCode.REFUND_REFUSED:
                    keys.append(str(workflow.uuid4()))

            outside = False
            try:
                await self._holds.attempt(
                    what,
                    lambda: policies.remote(
                        policies.PAYMENT,
                        PaymentActivities.refund_payment,
                        RefundPaymentInput(
                            order_id=self._journal.view.order_id,
                            authorization_id=authorization_id,
                            amount=amount,
                            reason=reason,
                            idempotency_key=keys[-1],
                        ),
                        what,
                    ),
                    declined={REFUND_REFUSED: HoldCode.REFUND_REFUSED},
                    after_hold=renew_after,
                )
            except HoldRejected:
                outside = True  # the operator settles it with the customer some other way
            payment.refunded += amount
            refund = RefundView(
                refund_id=f"RF-{len(self._journal.view.refunds) + 1}",
                kind=kind,
                amount=amount,
                reason=reason,
                at=workflow.now(),
                return_id=return_id,
                settled_outside=outside,
            )
            self._journal.view.refunds.append(refund)
            self._journal.append(
                "refund_settled_outside" if outside else "payment_refunded",
                f"{money(amount)} ({kind.value})",
            )
            return refund
