"""The only place an order's money moves: authorize, capture per parcel, release, refund.

One live authorization per order; each parcel's capture at its hand-over, with its own
idempotency key; never more captured than authorized, never more refunded than captured. All of
it under one lock, because an Update's refund may wait here while a parcel's capture runs.
"""

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from activities.payments import PaymentActivities
from models.activities import (
    AuthorizePaymentInput,
    CapturePaymentInput,
    RefundPaymentInput,
    VoidPaymentInput,
)
from models.orders import CaptureView, PaymentSummary, RefundKind, RefundView, money
from workflows import policies, rules
from workflows.journal import Journal


class Money:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal
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
        self._authorize_key = str(workflow.uuid4())
        authorization = await policies.remote(
            policies.PAYMENT,
            PaymentActivities.authorize_payment,
            AuthorizePaymentInput(
                order_id=view.order_id,
                token=token,
                amount=totals.total,
                currency=totals.currency,
                idempotency_key=self._authorize_key,
            ),
            f"Authorize {money(totals.total, totals.currency)}",
        )
        self.payment.authorization_id = authorization.authorization_id
        self.payment.authorized = authorization.amount
        self._journal.append("payment_authorized", money(authorization.amount, totals.currency))

    async def capture(self, amount: int, shipment_id: str | None) -> None:
        """Take a parcel's share; bounded by what the authorization still holds."""
        async with self._lock:
            amount = min(amount, self.uncaptured)
            payment = self.payment
            if amount <= 0 or payment.authorization_id is None:
                return
            result = await policies.remote(
                policies.PAYMENT,
                PaymentActivities.capture_payment,
                CapturePaymentInput(
                    order_id=self._journal.view.order_id,
                    authorization_id=payment.authorization_id,
                    amount=amount,
                    idempotency_key=str(workflow.uuid4()),
                    shipment_id=shipment_id,
                ),
                f"Capture {money(amount)} for {shipment_id or 'the order'}",
            )
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
            if self._authorize_key is None or (not cancelled and self.uncaptured <= 0):
                return
            result = await policies.remote(
                policies.PAYMENT,
                PaymentActivities.void_payment,
                VoidPaymentInput(
                    order_id=self._journal.view.order_id,
                    authorize_key=self._authorize_key,
                    idempotency_key=str(workflow.uuid4()),
                ),
                "Void the card authorization" if cancelled else "Release the uncaptured rest",
            )
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
            what = f"{return_id} " if return_id else ""
            await policies.remote(
                policies.PAYMENT,
                PaymentActivities.refund_payment,
                RefundPaymentInput(
                    order_id=self._journal.view.order_id,
                    authorization_id=payment.authorization_id,
                    amount=amount,
                    reason=reason,
                    idempotency_key=str(workflow.uuid4()),
                ),
                f"Refund {money(amount)} for {what}({kind.value}: {reason})",
            )
            payment.refunded += amount
            refund = RefundView(
                refund_id=f"RF-{len(self._journal.view.refunds) + 1}",
                kind=kind,
                amount=amount,
                reason=reason,
                at=workflow.now(),
                return_id=return_id,
            )
            self._journal.view.refunds.append(refund)
            self._journal.append("payment_refunded", f"{money(amount)} ({kind.value})")
            return refund
