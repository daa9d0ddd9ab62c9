"""The only place an order's money moves: authorize, capture per parcel, release, refund, renew.

One live authorization per order; each parcel's capture at its hand-over, with its own
idempotency key; never more captured than authorized, never more refunded than captured. All of
it under one lock, because an Update's refund may wait here while a parcel's capture runs.

Card authorizations expire (a week, at most processors): while the order waits on a hold,
workflows/renewal.py replaces the live one before it expires. Money calls wait for a renewal in
progress, and a renewal for the calls in flight, so a capture always goes to the authorization
that is live.
"""

import asyncio
from collections.abc import Callable
from typing import Protocol, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from activities.errors import PAYMENT_DECLINED, REFUND_REFUSED
from activities.payments import PaymentActivities
from models.activities import (
    AuthorizePaymentInput,
    CapturePaymentInput,
    PaymentResult,
    RefundPaymentInput,
    VoidPaymentInput,
)
from models.holds import HoldCode
from models.orders import (
    AuthorizationStatus,
    AuthorizationView,
    CaptureView,
    OrderTimeouts,
    PaymentSummary,
    Problem,
    RefundCharge,
    RefundKind,
    RefundView,
    money,
)
from workflows import metrics, policies, rules
from workflows.holds import HoldRejected, Holds
from workflows.journal import Journal
from workflows.renewal import AuthorizationRenewal


class _Amounted(Protocol):
    @property
    def amount(self) -> int: ...


Paid = TypeVar("Paid", bound=_Amounted)
Arg = TypeVar("Arg")

# The processor's answer to a capture or void of an authorization that has lapsed.
AUTHORIZATION_EXPIRED = "authorization_expired"


class Money:
    def __init__(self, journal: Journal, holds: Holds, timeouts: OrderTimeouts) -> None:
        self._journal = journal
        self._holds = holds
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._authorize_keys: dict[str, str] = {}  # authorization id -> its authorize key
        self.in_flight = 0  # money calls running now; a renewal waits for them
        self._renewal = AuthorizationRenewal(self, journal, holds, timeouts.auth_renew_margin)
        holds.on_wait = self._renewal.watch

    @property
    def renewal_declined(self) -> Problem | None:
        """Why a renewal was declined: the order cannot keep its payment while it waits."""
        return self._renewal.declined

    @property
    def payment(self) -> PaymentSummary:
        return self._journal.view.payment

    @property
    def uncaptured(self) -> int:
        payment = self.payment
        return payment.authorized - payment.captured - payment.released

    @property
    def live(self) -> AuthorizationView | None:
        return next(
            (a for a in self.payment.authorizations if a.status is AuthorizationStatus.LIVE), None
        )

    def captured_on(self, authorization_id: str) -> int:
        return sum(
            c.amount for c in self.payment.captures if c.authorization_id == authorization_id
        )

    def _refunded_on(self, authorization_id: str) -> int:
        return sum(
            charge.amount
            for refund in self._journal.view.refunds
            for charge in refund.charges
            if charge.authorization_id == authorization_id
        )

    async def authorize(self, token: str) -> None:
        """Raises the activity's error on a decline; the order decides what that means."""
        totals = self._journal.view.totals
        assert totals is not None
        self._token = token
        authorization = await self.authorize_amount(totals.total)
        self.payment.authorized = authorization.amount
        self._journal.append("payment_authorized", money(authorization.amount, totals.currency))

    async def authorize_amount(self, amount: int) -> AuthorizationView:
        view = self._journal.view
        assert self._token is not None and view.totals is not None
        currency = view.totals.currency
        key = str(workflow.uuid4())
        what = f"Authorize {money(amount, currency)}"
        result = await self._holds.attempt(
            what,
            lambda: self._pay(
                "authorize",
                amount,
                PaymentActivities.authorize_payment,
                AuthorizePaymentInput(
                    order_id=view.order_id,
                    token=self._token or "",
                    amount=amount,
                    currency=currency,
                    idempotency_key=key,
                ),
                what,
            ),
        )
        authorization = AuthorizationView(
            authorization_id=result.authorization_id,
            amount=result.amount,
            authorized_at=workflow.now(),
            expires_at=result.expires_at,
        )
        self._authorize_keys[authorization.authorization_id] = key
        self.payment.authorizations.append(authorization)
        self.payment.authorization_id = authorization.authorization_id
        return authorization

    async def _pay(
        self,
        operation: str,
        amount: int,
        activity: Callable[[PaymentActivities, Arg], Paid],
        arg: Arg,
        what: str,
    ) -> Paid:
        """One call to the card processor, counted by the outcome that reached the order (after
        the activity's retries): approved, declined (a business refusal) or failed."""
        totals = self._journal.view.totals
        currency = totals.currency if totals is not None else "unknown"
        try:
            result = await policies.remote(policies.PAYMENT, activity, arg, what)
        except ActivityError as err:
            refused = policies.business_problem(err, PAYMENT_DECLINED, REFUND_REFUSED)
            metrics.payment(
                operation, "failed" if refused is None else "declined", amount, currency
            )
            raise
        metrics.payment(operation, "approved", result.amount, currency)
        return result

    async def _gate(self) -> None:
        """A money call waits while the authorization is being replaced."""
        await workflow.wait_condition(lambda: not self._renewal.renewing)

    async def capture(self, amount: int, shipment_id: str | None) -> None:
        """Take a parcel's share from the live authorization, bounded by what it still holds.

        A decline holds the order (`capture_declined`): released, the capture is tried again
        under a new key (the declined one stays declined), on whichever authorization is live
        by then; rejected, the amount is written off.
        """
        async with self._lock:
            amount = min(amount, self.uncaptured)
            if amount <= 0 or self.live is None:
                return
            what = f"Capture {money(amount)} for {shipment_id or 'the order'}"
            keys = [str(workflow.uuid4())]
            charged: list[str] = []

            def renew_after(code: HoldCode) -> None:
                if code is HoldCode.CAPTURE_DECLINED:
                    keys.append(str(workflow.uuid4()))

            async def attempt() -> PaymentResult:
                await self._gate()
                live = self.live
                if live is None:
                    raise ApplicationError(
                        "no live card authorization", AUTHORIZATION_EXPIRED, type=PAYMENT_DECLINED
                    )
                charged.append(live.authorization_id)
                self.in_flight += 1
                try:
                    return await self._pay(
                        "capture",
                        amount,
                        PaymentActivities.capture_payment,
                        CapturePaymentInput(
                            order_id=self._journal.view.order_id,
                            authorization_id=live.authorization_id,
                            amount=amount,
                            idempotency_key=keys[-1],
                            shipment_id=shipment_id,
                        ),
                        what,
                    )
                finally:
                    self.in_flight -= 1

            try:
                result = await self._holds.attempt(
                    what,
                    attempt,
                    declined={PAYMENT_DECLINED: HoldCode.CAPTURE_DECLINED},
                    after_hold=renew_after,
                )
            except HoldRejected as rejected:
                self.payment.written_off += amount
                self._journal.append(
                    "capture_written_off", f"{money(amount)} {shipment_id}: {rejected.hold.reason}"
                )
                return
            payment = self.payment
            authorization_id = charged[-1]
            payment.captured += result.amount
            payment.captures.append(
                CaptureView(
                    capture_id=result.transaction_id or f"CAP-{len(payment.captures) + 1}",
                    authorization_id=authorization_id,
                    shipment_id=shipment_id,
                    amount=result.amount,
                    at=workflow.now(),
                )
            )
            live = self.live
            if live is not None and self.captured_on(live.authorization_id) >= live.amount:
                live.status = AuthorizationStatus.CAPTURED
            self._journal.append("payment_captured", f"{money(result.amount)} {shipment_id}")

    async def release(self, *, cancelled: bool) -> None:
        """Give back what the live authorization holds uncaptured: all of it on a cancel."""
        async with self._lock:
            await self._gate()
            live = self.live
            if live is None or (not cancelled and self.uncaptured <= 0):
                return
            what = "Void the card authorization" if cancelled else "Release the uncaptured rest"
            released = await self.void(live, what)
            if released is None:
                return  # an operator gave the void up: the authorization lapses by itself
            self.payment.released += released
            self.payment.voided = cancelled
            self._journal.append(
                "payment_voided" if cancelled else "payment_released", money(released)
            )

    async def void(self, authorization: AuthorizationView, what: str) -> int | None:
        """Void one authorization; what it gave back (all it held uncaptured, if it had
        lapsed already), or None if an operator gave the void up."""
        authorize_key = self._authorize_keys[authorization.authorization_id]
        key = str(workflow.uuid4())
        left = authorization.amount - self.captured_on(authorization.authorization_id)
        self.in_flight += 1
        try:
            result = await self._holds.attempt(
                what,
                lambda: self._pay(
                    "void",
                    left,
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
            return None
        except ActivityError as err:
            problem = policies.business_problem(err, PAYMENT_DECLINED)
            if problem is None or problem.code != AUTHORIZATION_EXPIRED:
                raise
            authorization.status = AuthorizationStatus.EXPIRED
            self._journal.append("authorization_expired", authorization.authorization_id)
            return left
        finally:
            self.in_flight -= 1
        captured = self.captured_on(authorization.authorization_id)
        authorization.status = (
            AuthorizationStatus.CAPTURED if captured > 0 else AuthorizationStatus.VOIDED
        )
        return result.amount

    # ---- refunds ----------------------------------------------------------------------------

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
        waited here while another one took the money. A refund is charged to the captures of
        each authorization in turn (one, unless a renewal split the captures).
        """
        async with self._lock:
            await self._gate()
            payment = self.payment
            left = payment.captured - payment.refunded
            if exact and amount > left:
                raise ApplicationError(
                    rules.refund_bound(left), type="RefundRefused", non_retryable=True
                )
            amount = min(amount, left)
            if amount <= 0 or not payment.authorizations:
                return None
            what = f"Refund {money(amount)} " + (f"for {return_id} " if return_id else "")
            what += f"({kind.value}: {reason})"
            charges: list[RefundCharge] = []
            outside = False
            remaining = amount
            for authorization in payment.authorizations:
                charged_to = authorization.authorization_id
                refundable = self.captured_on(charged_to) - self._refunded_on(charged_to)
                part = min(remaining, refundable)
                if part <= 0:
                    continue
                outside |= not await self._refund_part(authorization, part, reason, what)
                charges.append(RefundCharge(authorization_id=charged_to, amount=part))
                remaining -= part
                if remaining == 0:
                    break
            payment.refunded += amount
            refund = RefundView(
                refund_id=f"RF-{len(self._journal.view.refunds) + 1}",
                kind=kind,
                amount=amount,
                reason=reason,
                at=workflow.now(),
                return_id=return_id,
                settled_outside=outside,
                charges=charges,
            )
            self._journal.view.refunds.append(refund)
            self._journal.append(
                "refund_settled_outside" if outside else "payment_refunded",
                f"{money(amount)} ({kind.value})",
            )
            return refund

    async def _refund_part(
        self, authorization: AuthorizationView, amount: int, reason: str, what: str
    ) -> bool:
        """Refund one authorization's share; False if an operator settled it outside."""
        keys = [str(workflow.uuid4())]

        def renew_after(code: HoldCode) -> None:
            if code is HoldCode.REFUND_REFUSED:
                keys.append(str(workflow.uuid4()))

        try:
            await self._holds.attempt(
                what,
                lambda: self._pay(
                    "refund",
                    amount,
                    PaymentActivities.refund_payment,
                    RefundPaymentInput(
                        order_id=self._journal.view.order_id,
                        authorization_id=authorization.authorization_id,
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
            return False  # the operator settles it with the customer some other way
        return True
