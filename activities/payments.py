"""Payments through a `PaymentGateway`; the built-in one simulates a card processor.

Every call carries an idempotency key made by the workflow (`workflow.uuid4()`), so a retried
activity returns the first result instead of charging again.
"""

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity

from activities.errors import PAYMENT_DECLINED, REFUND_REFUSED, business_failure
from models.activities import (
    AuthorizePaymentInput,
    CapturePaymentInput,
    PaymentAuthorization,
    PaymentResult,
    RefundPaymentInput,
    VoidPaymentInput,
)
from models.tables import PaymentTransaction


class PaymentDeclined(Exception):
    """The card was refused; retrying will not change that."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class GatewayUnavailable(Exception):
    """A transient processor failure; the same request may succeed later."""


class PaymentGateway(Protocol):
    def authorize(
        self, *, order_id: str, token: str, amount: int, currency: str, idempotency_key: str
    ) -> str: ...

    def capture(
        self, *, order_id: str, authorization_id: str, amount: int, idempotency_key: str
    ) -> str: ...

    def void(self, *, order_id: str, authorize_key: str, idempotency_key: str) -> str | None: ...

    def refund(
        self,
        *,
        order_id: str,
        authorization_id: str,
        amount: int,
        reason: str,
        idempotency_key: str,
    ) -> str: ...


# Test card tokens, as a real processor's sandbox has them.
DECLINING_TOKENS = {
    "tok_chargeDeclined": ("card_declined", "the card was declined"),
    "tok_insufficientFunds": ("insufficient_funds", "the card has insufficient funds"),
}
FLAKY_TOKEN = "tok_gatewayFlaky"
FLAKY_FAILURES = 2


class SimulatedCardProcessor:
    """A card processor kept in the payment ledger table.

    `tok_gatewayFlaky` fails its first two attempts per idempotency key (counted in memory,
    like a processor's transient outage), then approves. Any other `tok_...` approves.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._flaky_attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def authorize(
        self, *, order_id: str, token: str, amount: int, currency: str, idempotency_key: str
    ) -> str:
        existing = self._find(idempotency_key)
        if existing is None:
            if token == FLAKY_TOKEN:
                with self._lock:
                    attempt = self._flaky_attempts.get(idempotency_key, 0) + 1
                    self._flaky_attempts[idempotency_key] = attempt
                if attempt <= FLAKY_FAILURES:
                    raise GatewayUnavailable(f"processor timeout (attempt {attempt})")
            code, _ = DECLINING_TOKENS.get(token, (None, None))
            existing = self._record(
                PaymentTransaction(
                    id=_txn_id("auth"),
                    idempotency_key=idempotency_key,
                    order_id=order_id,
                    kind="authorize",
                    status="declined" if code else "approved",
                    amount=amount,
                    currency=currency,
                    token=token,
                    reason=code,
                )
            )
        if existing.status == "declined":
            code = existing.reason or "card_declined"
            raise PaymentDeclined(code, dict(DECLINING_TOKENS.values()).get(code, code))
        return existing.id

    def capture(
        self, *, order_id: str, authorization_id: str, amount: int, idempotency_key: str
    ) -> str:
        existing = self._find(idempotency_key)
        if existing is None:
            auth = self._get(authorization_id)
            if auth is None or auth.kind != "authorize" or auth.status != "approved":
                raise PaymentDeclined("authorization_invalid", f"no approved {authorization_id}")
            if amount > auth.amount:
                raise PaymentDeclined("amount_too_large", "capture exceeds the authorization")
            if self._total(authorization_id, "capture") or self._total(authorization_id, "void"):
                raise PaymentDeclined(
                    "authorization_closed", f"{authorization_id} was already captured or voided"
                )
            existing = self._record(
                PaymentTransaction(
                    id=_txn_id("cap"),
                    idempotency_key=idempotency_key,
                    order_id=order_id,
                    kind="capture",
                    status="approved",
                    amount=amount,
                    currency=auth.currency,
                    authorization_id=authorization_id,
                )
            )
        return existing.id

    def void(self, *, order_id: str, authorize_key: str, idempotency_key: str) -> str | None:
        existing = self._find(idempotency_key)
        if existing is not None:
            return existing.id
        auth = self._find(authorize_key)
        if auth is None or auth.status != "approved":
            return None  # nothing was authorized: nothing to void
        return self._record(
            PaymentTransaction(
                id=_txn_id("void"),
                idempotency_key=idempotency_key,
                order_id=order_id,
                kind="void",
                status="approved",
                amount=auth.amount,
                currency=auth.currency,
                authorization_id=auth.id,
            )
        ).id

    def refund(
        self,
        *,
        order_id: str,
        authorization_id: str,
        amount: int,
        reason: str,
        idempotency_key: str,
    ) -> str:
        existing = self._find(idempotency_key)
        if existing is not None:
            return existing.id
        auth = self._get(authorization_id)
        captured = self._total(authorization_id, "capture")
        refunded = self._total(authorization_id, "refund")
        if auth is None or amount <= 0 or refunded + amount > captured:
            raise PaymentDeclined(
                "refund_exceeds_capture",
                f"refund of {amount} exceeds what is left to refund ({captured - refunded})",
            )
        return self._record(
            PaymentTransaction(
                id=_txn_id("ref"),
                idempotency_key=idempotency_key,
                order_id=order_id,
                kind="refund",
                status="approved",
                amount=amount,
                currency=auth.currency,
                authorization_id=authorization_id,
                reason=reason,
            )
        ).id

    def _find(self, idempotency_key: str) -> PaymentTransaction | None:
        with Session(self._engine) as session:
            return session.exec(
                select(PaymentTransaction).where(
                    PaymentTransaction.idempotency_key == idempotency_key
                )
            ).first()

    def _get(self, transaction_id: str) -> PaymentTransaction | None:
        with Session(self._engine) as session:
            return session.get(PaymentTransaction, transaction_id)

    def _total(self, authorization_id: str, kind: str) -> int:
        with Session(self._engine) as session:
            total = session.exec(
                select(func.coalesce(func.sum(PaymentTransaction.amount), 0)).where(
                    PaymentTransaction.authorization_id == authorization_id,
                    col(PaymentTransaction.kind) == kind,
                    col(PaymentTransaction.status) == "approved",
                )
            ).one()
        return int(total)

    def _record(self, row: PaymentTransaction) -> PaymentTransaction:
        """Insert once; if a concurrent retry won the race, return its row instead."""
        with Session(self._engine) as session:
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                winner = self._find(row.idempotency_key)
                if winner is None:
                    raise
                return winner
            session.refresh(row)
            return row


def _txn_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@contextmanager
def _declines_as(error_type: str) -> Iterator[None]:
    """A processor's refusal becomes a non-retryable business failure of `error_type`."""
    try:
        yield
    except PaymentDeclined as declined:
        raise business_failure(error_type, declined.code, str(declined)) from declined


class PaymentActivities:
    def __init__(self, gateway: PaymentGateway) -> None:
        self._gateway = gateway

    @activity.defn(name="authorize_payment")
    def authorize_payment(self, request: AuthorizePaymentInput) -> PaymentAuthorization:
        with _declines_as(PAYMENT_DECLINED):
            authorization_id = self._gateway.authorize(
                order_id=request.order_id,
                token=request.token,
                amount=request.amount,
                currency=request.currency,
                idempotency_key=request.idempotency_key,
            )
        return PaymentAuthorization(authorization_id=authorization_id, amount=request.amount)

    @activity.defn(name="capture_payment")
    def capture_payment(self, request: CapturePaymentInput) -> PaymentResult:
        with _declines_as(PAYMENT_DECLINED):
            transaction_id = self._gateway.capture(
                order_id=request.order_id,
                authorization_id=request.authorization_id,
                amount=request.amount,
                idempotency_key=request.idempotency_key,
            )
        return PaymentResult(transaction_id=transaction_id, amount=request.amount)

    @activity.defn(name="void_payment")
    def void_payment(self, request: VoidPaymentInput) -> PaymentResult:
        transaction_id = self._gateway.void(
            order_id=request.order_id,
            authorize_key=request.authorize_key,
            idempotency_key=request.idempotency_key,
        )
        return PaymentResult(transaction_id=transaction_id, amount=0)

    @activity.defn(name="refund_payment")
    def refund_payment(self, request: RefundPaymentInput) -> PaymentResult:
        with _declines_as(REFUND_REFUSED):
            transaction_id = self._gateway.refund(
                order_id=request.order_id,
                authorization_id=request.authorization_id,
                amount=request.amount,
                reason=request.reason,
                idempotency_key=request.idempotency_key,
            )
        return PaymentResult(transaction_id=transaction_id, amount=request.amount)
