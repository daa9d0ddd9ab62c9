"""Payments through a `PaymentGateway`; the built-in one simulates a card processor.

Every call carries an idempotency key made by the workflow (`workflow.uuid4()`), so a retried
activity returns the first result instead of charging again.

An authorization is captured in parts, one per parcel as it is handed over, as real processors
allow: the approved captures never add up to more than was authorized, and a void releases
whatever is not captured and closes the authorization. An authorization lapses, as a real one
does, a while after it is made: it can then be neither captured nor voided, while refunds of
what it captured stay possible.
"""

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import ColumnElement, Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.errors import PAYMENT_DECLINED, REFUND_REFUSED, business_failure
from database import read_only
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
    ) -> PaymentAuthorization:
        """The authorization, with when the processor lets it lapse."""
        ...

    def capture(
        self,
        *,
        order_id: str,
        authorization_id: str,
        amount: int,
        idempotency_key: str,
        shipment_id: str | None = None,
    ) -> str: ...

    def void(self, *, order_id: str, authorize_key: str, idempotency_key: str) -> PaymentResult:
        """Release the uncaptured rest of the authorization: the void's id and the amount."""
        ...

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
# Authorizes, then every capture is declined: the order waits in a `capture_declined` hold.
CAPTURE_DECLINING_TOKEN = "tok_captureDeclined"


class SimulatedCardProcessor:
    """A card processor kept in the payment ledger table.

    `tok_gatewayFlaky` fails its first two attempts per idempotency key (counted in memory,
    like a processor's transient outage), then approves; `tok_captureDeclined` approves the
    authorization and declines its captures. Any other `tok_...` approves.

    Authorizations lapse `auth_validity` after they are made (`clock` tells the time; a week
    at most processors for an online card payment): captures of a lapsed one, and voids of one
    with something left to release, are declined `authorization_expired`.

    Captures, voids and refunds of one authorization are serialised on its ledger row (a row
    lock on PostgreSQL; SQLite's `BEGIN IMMEDIATE` serialises every writer), so two calls with
    different keys racing each other cannot both spend the same remainder.
    """

    def __init__(
        self,
        engine: Engine,
        auth_validity: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._validity = auth_validity
        self._clock = clock
        self._flaky_attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def authorize(
        self, *, order_id: str, token: str, amount: int, currency: str, idempotency_key: str
    ) -> PaymentAuthorization:
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
                    expires_at=None if code else self._clock() + self._validity,
                )
            )
        if existing.status == "declined":
            code = existing.reason or "card_declined"
            raise PaymentDeclined(code, dict(DECLINING_TOKENS.values()).get(code, code))
        return PaymentAuthorization(
            authorization_id=existing.id,
            amount=existing.amount,
            expires_at=_aware(existing.expires_at),
        )

    def capture(
        self,
        *,
        order_id: str,
        authorization_id: str,
        amount: int,
        idempotency_key: str,
        shipment_id: str | None = None,
    ) -> str:
        """One partial capture; declines leave no row, so a retry is judged afresh (and, as
        captures only grow and a void and a lapse are final, judged the same)."""
        existing = self._find(idempotency_key)
        if existing is not None:
            return existing.id
        with self._session() as session:
            auth = _locked(session, col(PaymentTransaction.id) == authorization_id)
            existing = _by_key(session, idempotency_key)  # a racing retry got in first
            if existing is not None:
                return existing.id
            if auth is None or auth.kind != "authorize" or auth.status != "approved":
                raise PaymentDeclined("authorization_invalid", f"no approved {authorization_id}")
            if amount <= 0:
                raise PaymentDeclined("amount_invalid", f"cannot capture {amount}")
            if _total(session, authorization_id, "void"):
                raise PaymentDeclined("authorization_closed", f"{authorization_id} was voided")
            self._refuse_if_lapsed(auth)
            if auth.token == CAPTURE_DECLINING_TOKEN:
                raise PaymentDeclined("capture_declined", "the issuer declined the capture")
            captured = _total(session, authorization_id, "capture")
            if captured + amount > auth.amount:
                raise PaymentDeclined(
                    "amount_too_large",
                    f"capture of {amount} exceeds what is left of the authorization "
                    f"({auth.amount - captured})",
                )
            return self._insert(
                session,
                PaymentTransaction(
                    id=_txn_id("cap"),
                    idempotency_key=idempotency_key,
                    order_id=order_id,
                    kind="capture",
                    status="approved",
                    amount=amount,
                    currency=auth.currency,
                    authorization_id=authorization_id,
                    shipment_id=shipment_id,
                ),
            ).id

    def void(self, *, order_id: str, authorize_key: str, idempotency_key: str) -> PaymentResult:
        """Release what is authorized and not captured, and close the authorization.

        Nothing is recorded (and nothing released: no id, amount 0) when there is nothing to
        release: no approved authorization, one fully captured, or one an earlier void (with
        another key) already closed. A fully captured authorization takes no more captures
        anyway, so it needs no void row to close it. A lapsed one with something left is
        declined (`authorization_expired`): the processor has let it go by itself.
        """
        existing = self._find(idempotency_key)
        if existing is not None:
            return PaymentResult(transaction_id=existing.id, amount=existing.amount)
        with self._session() as session:
            auth = _locked(session, col(PaymentTransaction.idempotency_key) == authorize_key)
            existing = _by_key(session, idempotency_key)
            if existing is not None:
                return PaymentResult(transaction_id=existing.id, amount=existing.amount)
            if auth is None or auth.kind != "authorize" or auth.status != "approved":
                return _nothing_released()  # nothing was authorized: nothing to void
            if _total(session, auth.id, "void"):
                return _nothing_released()
            remainder = auth.amount - _total(session, auth.id, "capture")
            if remainder <= 0:
                return _nothing_released()
            self._refuse_if_lapsed(auth)
            void = self._insert(
                session,
                PaymentTransaction(
                    id=_txn_id("void"),
                    idempotency_key=idempotency_key,
                    order_id=order_id,
                    kind="void",
                    status="approved",
                    amount=remainder,
                    currency=auth.currency,
                    authorization_id=auth.id,
                ),
            )
            return PaymentResult(transaction_id=void.id, amount=void.amount)

    def refund(
        self,
        *,
        order_id: str,
        authorization_id: str,
        amount: int,
        reason: str,
        idempotency_key: str,
    ) -> str:
        """Refunds of every capture together never exceed what the captures took."""
        existing = self._find(idempotency_key)
        if existing is not None:
            return existing.id
        with self._session() as session:
            auth = _locked(session, col(PaymentTransaction.id) == authorization_id)
            existing = _by_key(session, idempotency_key)
            if existing is not None:
                return existing.id
            captured = _total(session, authorization_id, "capture")
            refunded = _total(session, authorization_id, "refund")
            if auth is None or amount <= 0 or refunded + amount > captured:
                raise PaymentDeclined(
                    "refund_exceeds_capture",
                    f"refund of {amount} exceeds what is left to refund ({captured - refunded})",
                )
            return self._insert(
                session,
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
                ),
            ).id

    def _refuse_if_lapsed(self, auth: PaymentTransaction) -> None:
        expires_at = _aware(auth.expires_at)
        if expires_at is not None and self._clock() >= expires_at:
            raise PaymentDeclined(
                "authorization_expired", f"{auth.id} expired at {expires_at.isoformat()}"
            )

    def _session(self) -> Session:
        # Rows stay readable after the commit, without a second transaction to reload them.
        return Session(self._engine, expire_on_commit=False)

    def _find(self, idempotency_key: str) -> PaymentTransaction | None:
        """A lock-free look-up for retries; the answer that counts is re-read under the lock."""
        with Session(read_only(self._engine)) as session:
            return _by_key(session, idempotency_key)

    def _record(self, row: PaymentTransaction) -> PaymentTransaction:
        with self._session() as session:
            return self._insert(session, row)

    def _insert(self, session: Session, row: PaymentTransaction) -> PaymentTransaction:
        """Commit `row` once; if its idempotency key is taken, the row that took it.

        Under an authorization's lock only a call racing one under the same key elsewhere (an
        authorize and its retry, say) can lose here.
        """
        key = row.idempotency_key
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            winner = self._find(key)
            if winner is None:
                raise
            return winner
        return row


def _by_key(session: Session, idempotency_key: str) -> PaymentTransaction | None:
    return session.exec(
        select(PaymentTransaction).where(PaymentTransaction.idempotency_key == idempotency_key)
    ).first()


def _locked(session: Session, where: ColumnElement[bool]) -> PaymentTransaction | None:
    """The ledger row `where` names, locked until the session ends: the point at which one
    authorization's captures, voids and refunds take turns. (SQLite has no row locks; its
    `BEGIN IMMEDIATE` has already serialised the whole transaction.)"""
    return session.exec(select(PaymentTransaction).where(where).with_for_update()).first()


def _total(session: Session, authorization_id: str, kind: str) -> int:
    total = session.exec(
        select(func.coalesce(func.sum(PaymentTransaction.amount), 0)).where(
            PaymentTransaction.authorization_id == authorization_id,
            col(PaymentTransaction.kind) == kind,
            col(PaymentTransaction.status) == "approved",
        )
    ).one()
    return int(total)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _nothing_released() -> PaymentResult:
    return PaymentResult(transaction_id=None, amount=0)


def _txn_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@contextmanager
def _declines_as(error_type: str) -> Iterator[None]:
    """A processor's refusal becomes a non-retryable business failure of `error_type`; its
    passing outage a retryable one, logged in one line rather than a traceback per attempt."""
    try:
        yield
    except PaymentDeclined as declined:
        raise business_failure(error_type, declined.code, str(declined)) from declined
    except GatewayUnavailable as down:
        info = activity.info()
        activity.logger.warning(
            "%s: card processor unavailable (attempt %d): %s", info.workflow_id, info.attempt, down
        )
        raise ApplicationError(
            f"card processor unavailable: {down}",
            type="GatewayUnavailable",
            category=ApplicationErrorCategory.BENIGN,
        ) from None


class PaymentActivities:
    def __init__(self, gateway: PaymentGateway) -> None:
        self._gateway = gateway

    @activity.defn(name="authorize_payment")
    def authorize_payment(self, request: AuthorizePaymentInput) -> PaymentAuthorization:
        with _declines_as(PAYMENT_DECLINED):
            return self._gateway.authorize(
                order_id=request.order_id,
                token=request.token,
                amount=request.amount,
                currency=request.currency,
                idempotency_key=request.idempotency_key,
            )

    @activity.defn(name="capture_payment")
    def capture_payment(self, request: CapturePaymentInput) -> PaymentResult:
        """Capture one parcel's share; declined (`amount_too_large`) past the authorization."""
        with _declines_as(PAYMENT_DECLINED):
            transaction_id = self._gateway.capture(
                order_id=request.order_id,
                authorization_id=request.authorization_id,
                amount=request.amount,
                idempotency_key=request.idempotency_key,
                shipment_id=request.shipment_id,
            )
        return PaymentResult(transaction_id=transaction_id, amount=request.amount)

    @activity.defn(name="void_payment")
    def void_payment(self, request: VoidPaymentInput) -> PaymentResult:
        """Release the uncaptured rest; `amount` is what was released (0 if nothing was).
        Refused (`authorization_expired`) once the authorization has lapsed by itself."""
        with _declines_as(PAYMENT_DECLINED):
            return self._gateway.void(
                order_id=request.order_id,
                authorize_key=request.authorize_key,
                idempotency_key=request.idempotency_key,
            )

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
