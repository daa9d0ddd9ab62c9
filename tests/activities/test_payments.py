"""PaymentActivities on the simulated card processor's ledger (SQLite, and PostgreSQL).

An authorization is captured in parts (one per parcel), never past what was authorized; a void
releases the rest. Races between calls with different keys are as safe as retries of one.
An authorization lapses `VALIDITY` after it is made, on a clock the tests move.
"""

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

from activities.errors import PAYMENT_DECLINED, REFUND_REFUSED
from activities.payments import PaymentActivities, SimulatedCardProcessor
from models.activities import (
    AuthorizePaymentInput,
    CapturePaymentInput,
    PaymentAuthorization,
    PaymentResult,
    RefundPaymentInput,
    VoidPaymentInput,
)
from models.tables import PaymentTransaction
from tests.activities.races import race

T = TypeVar("T")

_keys = itertools.count()


def key(label: str) -> str:
    return f"{label}-{next(_keys)}"


def ledger(engine: Engine, order_id: str) -> list[tuple[str, str, int]]:
    """(kind, status, amount) of every ledger row of the order, oldest first."""
    with Session(engine) as session:
        rows = session.exec(
            select(PaymentTransaction)
            .where(PaymentTransaction.order_id == order_id)
            .order_by(PaymentTransaction.created_at)  # type: ignore[arg-type]
        ).all()
        return [(row.kind, row.status, row.amount) for row in rows]


def authorization(
    payments: PaymentActivities,
    order_id: str,
    *,
    token: str = "tok_visa",
    amount: int = 2398,
    idempotency_key: str | None = None,
) -> PaymentAuthorization:
    return ActivityEnvironment().run(
        payments.authorize_payment,
        AuthorizePaymentInput(
            order_id=order_id,
            token=token,
            amount=amount,
            currency="USD",
            idempotency_key=idempotency_key or key("auth"),
        ),
    )


def authorize(
    payments: PaymentActivities,
    order_id: str,
    *,
    token: str = "tok_visa",
    amount: int = 2398,
    idempotency_key: str | None = None,
) -> str:
    return authorization(
        payments, order_id, token=token, amount=amount, idempotency_key=idempotency_key
    ).authorization_id


def capture(
    payments: PaymentActivities,
    order_id: str,
    authorization_id: str,
    amount: int,
    k: str,
    *,
    shipment_id: str | None = None,
) -> str | None:
    return (
        ActivityEnvironment()
        .run(
            payments.capture_payment,
            CapturePaymentInput(
                order_id=order_id,
                authorization_id=authorization_id,
                amount=amount,
                idempotency_key=k,
                shipment_id=shipment_id,
            ),
        )
        .transaction_id
    )


def void(payments: PaymentActivities, order_id: str, authorize_key: str, k: str) -> PaymentResult:
    return ActivityEnvironment().run(
        payments.void_payment,
        VoidPaymentInput(order_id=order_id, authorize_key=authorize_key, idempotency_key=k),
    )


def declined_code(call: Callable[[], object]) -> str:
    """The reason code of the business failure `call` raises."""
    with pytest.raises(ApplicationError) as declined:
        call()
    assert declined.value.non_retryable
    return str(declined.value.details[0])


def refund(
    payments: PaymentActivities, order_id: str, authorization_id: str, amount: int, k: str
) -> str | None:
    return (
        ActivityEnvironment()
        .run(
            payments.refund_payment,
            RefundPaymentInput(
                order_id=order_id,
                authorization_id=authorization_id,
                amount=amount,
                reason="test",
                idempotency_key=k,
            ),
        )
        .transaction_id
    )


class Clock:
    """The processor's time, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


VALIDITY = timedelta(days=7)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def payments(engine: Engine, clock: Clock) -> PaymentActivities:
    return PaymentActivities(SimulatedCardProcessor(engine, auth_validity=VALIDITY, clock=clock))


def test_a_retried_authorize_and_capture_charge_once(
    engine: Engine, payments: PaymentActivities
) -> None:
    first = authorize(payments, "o-1", idempotency_key="auth-key")
    again = authorize(payments, "o-1", idempotency_key="auth-key")
    assert again == first

    captured = capture(payments, "o-1", first, 2398, "cap-key")
    assert capture(payments, "o-1", first, 2398, "cap-key") == captured
    assert ledger(engine, "o-1") == [
        ("authorize", "approved", 2398),
        ("capture", "approved", 2398),
    ]


def test_an_authorize_racing_its_own_retry_records_one_row(
    engine: Engine, payments: PaymentActivities
) -> None:
    racers = 4
    start = threading.Barrier(racers)

    def attempt(_: int) -> str:
        start.wait()
        return authorize(payments, "o-1", idempotency_key="same-key")

    with ThreadPoolExecutor(max_workers=racers) as pool:
        ids = set(pool.map(attempt, range(racers)))

    assert len(ids) == 1
    assert ledger(engine, "o-1") == [("authorize", "approved", 2398)]


@pytest.mark.parametrize(
    ("token", "code"),
    [("tok_chargeDeclined", "card_declined"), ("tok_insufficientFunds", "insufficient_funds")],
)
def test_declining_cards_are_a_non_retryable_decline(
    engine: Engine, payments: PaymentActivities, token: str, code: str
) -> None:
    for _ in range(2):  # a retry with the same key gets the same answer, not a second row
        with pytest.raises(ApplicationError) as declined:
            authorize(payments, "o-1", token=token, idempotency_key="auth-key")
        assert declined.value.type == PAYMENT_DECLINED
        assert declined.value.non_retryable
        assert declined.value.details == (code,)
    assert ledger(engine, "o-1") == [("authorize", "declined", 2398)]


def test_the_flaky_token_fails_transiently_twice_then_approves(
    engine: Engine, payments: PaymentActivities
) -> None:
    for _ in range(2):
        # Retryable, so the activity's retry policy retries it; benign, so no traceback.
        with pytest.raises(ApplicationError) as raised:
            authorize(payments, "o-1", token="tok_gatewayFlaky", idempotency_key="flaky-key")
        assert raised.value.type == "GatewayUnavailable" and not raised.value.non_retryable
        assert raised.value.category is ApplicationErrorCategory.BENIGN
        assert ledger(engine, "o-1") == []
    approved = authorize(payments, "o-1", token="tok_gatewayFlaky", idempotency_key="flaky-key")
    assert authorize(payments, "o-1", token="tok_gatewayFlaky", idempotency_key="flaky-key") == (
        approved
    )
    assert ledger(engine, "o-1") == [("authorize", "approved", 2398)]


def test_capture_beyond_the_authorization_or_of_a_decline_is_refused(
    payments: PaymentActivities,
) -> None:
    approved = authorize(payments, "o-1", amount=1000)
    with pytest.raises(ApplicationError) as too_much:
        capture(payments, "o-1", approved, 1001, key("cap"))
    assert too_much.value.details == ("amount_too_large",)

    with pytest.raises(ApplicationError):
        authorize(payments, "o-2", token="tok_chargeDeclined", idempotency_key="declined")
    with pytest.raises(ApplicationError) as invalid:
        capture(payments, "o-2", "auth_does_not_exist", 10, key("cap"))
    assert invalid.value.details == ("authorization_invalid",)


def test_refunds_never_exceed_what_was_captured(
    engine: Engine, payments: PaymentActivities
) -> None:
    approved = authorize(payments, "o-1", amount=1000)
    with pytest.raises(ApplicationError) as nothing_captured:
        refund(payments, "o-1", approved, 1, key("ref"))
    assert nothing_captured.value.type == REFUND_REFUSED

    capture(payments, "o-1", approved, 1000, key("cap"))
    refund(payments, "o-1", approved, 600, "ref-600")
    refund(payments, "o-1", approved, 600, "ref-600")  # a retry, not a second refund
    with pytest.raises(ApplicationError) as too_much:
        refund(payments, "o-1", approved, 401, key("ref"))
    assert (too_much.value.type, too_much.value.details) == (
        REFUND_REFUSED,
        ("refund_exceeds_capture",),
    )
    refund(payments, "o-1", approved, 400, key("ref"))
    with pytest.raises(ApplicationError):
        refund(payments, "o-1", approved, 1, key("ref"))
    assert sorted(amount for kind, _, amount in ledger(engine, "o-1") if kind == "refund") == [
        400,
        600,
    ]


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(captured=st.integers(1, 5000), asks=st.lists(st.integers(-5, 3000), max_size=6))
def test_any_sequence_of_refunds_stays_within_the_capture(
    engine: Engine, payments: PaymentActivities, captured: int, asks: list[int]
) -> None:
    order_id = key("prop")
    approved = authorize(payments, order_id, amount=captured)
    capture(payments, order_id, approved, captured, key("cap"))
    granted = 0
    for amount in asks:
        try:
            refund(payments, order_id, approved, amount, key("ref"))
        except ApplicationError as refused:
            assert refused.type == REFUND_REFUSED
            assert amount <= 0 or granted + amount > captured
        else:
            granted += amount
    refunds = [amount for kind, _, amount in ledger(engine, order_id) if kind == "refund"]
    assert sum(refunds) == granted <= captured


def test_void_cancels_what_the_authorize_key_authorized_once(
    engine: Engine, payments: PaymentActivities
) -> None:
    approved = authorize(payments, "o-1", amount=1500, idempotency_key="auth-key")
    first = void(payments, "o-1", "auth-key", "void-key")
    assert first.amount == 1500 and first.transaction_id is not None
    assert void(payments, "o-1", "auth-key", "void-key") == first
    with Session(engine) as session:
        voids = session.exec(
            select(PaymentTransaction).where(PaymentTransaction.kind == "void")
        ).all()
    assert [(v.authorization_id, v.amount) for v in voids] == [(approved, 1500)]

    # Cancelled before the authorize ever ran (or it was declined): nothing to void.
    assert void(payments, "o-2", "never-used", "v2") == PaymentResult(transaction_id=None, amount=0)
    assert ledger(engine, "o-2") == []


def test_an_authorization_is_captured_in_parts_up_to_its_amount(
    engine: Engine, payments: PaymentActivities
) -> None:
    approved = authorize(payments, "o-1", amount=1000)
    first = capture(payments, "o-1", approved, 400, "cap-1", shipment_id="SHP-1")
    assert capture(payments, "o-1", approved, 400, "cap-1", shipment_id="SHP-1") == first
    capture(payments, "o-1", approved, 350, "cap-2", shipment_id="SHP-2")
    assert declined_code(lambda: capture(payments, "o-1", approved, 251, key("cap"))) == (
        "amount_too_large"
    )
    capture(payments, "o-1", approved, 250, "cap-3", shipment_id="SHP-3")
    assert declined_code(lambda: capture(payments, "o-1", approved, 1, key("cap"))) == (
        "amount_too_large"
    )
    # A retry after the authorization is used up still gets its own, first answer.
    assert capture(payments, "o-1", approved, 400, "cap-1", shipment_id="SHP-1") == first

    with Session(engine) as session:
        captures = session.exec(
            select(PaymentTransaction.shipment_id, PaymentTransaction.amount)
            .where(PaymentTransaction.kind == "capture")
            .order_by(PaymentTransaction.created_at)  # type: ignore[arg-type]
        ).all()
    assert [tuple(c) for c in captures] == [("SHP-1", 400), ("SHP-2", 350), ("SHP-3", 250)]


@pytest.mark.parametrize("amount", [0, -100])
def test_a_capture_of_nothing_or_less_is_refused(payments: PaymentActivities, amount: int) -> None:
    approved = authorize(payments, "o-1", amount=1000)
    # A negative capture would make room for more than was authorized.
    assert declined_code(lambda: capture(payments, "o-1", approved, amount, key("cap"))) == (
        "amount_invalid"
    )


def test_racing_captures_with_different_keys_never_exceed_the_authorization(
    engine: Engine, payments: PaymentActivities
) -> None:
    approved = authorize(payments, "o-1", amount=1000)
    outcomes = race(8, lambda n: capture(payments, "o-1", approved, 300, f"cap-{n}"))

    approved_ids = [o for o in outcomes if isinstance(o, str)]
    declines = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert len(approved_ids) == 3 and len(set(approved_ids)) == 3
    assert [d.details for d in declines] == [("amount_too_large",)] * 5
    assert sorted(amount for kind, _, amount in ledger(engine, "o-1") if kind == "capture") == [
        300,
        300,
        300,
    ]


def test_a_capture_racing_its_own_retries_records_one_row(
    engine: Engine, payments: PaymentActivities
) -> None:
    approved = authorize(payments, "o-1", amount=1000)
    outcomes = race(4, lambda _: capture(payments, "o-1", approved, 600, "same-key"))
    assert len(set(outcomes)) == 1 and isinstance(outcomes[0], str)
    assert [row for row in ledger(engine, "o-1") if row[0] == "capture"] == [
        ("capture", "approved", 600)
    ]


def test_a_void_releases_only_what_is_not_captured_and_closes_the_authorization(
    engine: Engine, payments: PaymentActivities
) -> None:
    approved = authorize(payments, "o-1", amount=1000, idempotency_key="auth-1")
    capture(payments, "o-1", approved, 400, key("cap"), shipment_id="SHP-1")

    released = void(payments, "o-1", "auth-1", "void-1")
    assert released.amount == 600 and released.transaction_id is not None
    assert void(payments, "o-1", "auth-1", "void-1") == released  # a retry: the first answer
    assert declined_code(lambda: capture(payments, "o-1", approved, 100, key("cap"))) == (
        "authorization_closed"
    )
    # A second void under a new key finds nothing left to release.
    assert void(payments, "o-1", "auth-1", "void-2") == PaymentResult(transaction_id=None, amount=0)
    assert ledger(engine, "o-1") == [
        ("authorize", "approved", 1000),
        ("capture", "approved", 400),
        ("void", "approved", 600),
    ]


def test_a_void_of_a_fully_captured_authorization_releases_nothing_and_records_nothing(
    engine: Engine, payments: PaymentActivities
) -> None:
    approved = authorize(payments, "o-1", amount=1000, idempotency_key="auth-1")
    capture(payments, "o-1", approved, 700, key("cap"))
    capture(payments, "o-1", approved, 300, key("cap"))
    for _ in range(2):
        assert void(payments, "o-1", "auth-1", "void-1") == PaymentResult(
            transaction_id=None, amount=0
        )
    assert [kind for kind, _, _ in ledger(engine, "o-1")] == ["authorize", "capture", "capture"]


@pytest.mark.parametrize("round_", range(5))
def test_a_void_racing_a_capture_splits_the_authorization_between_them(
    engine: Engine, payments: PaymentActivities, round_: int
) -> None:
    approved = authorize(payments, "o-1", amount=1000, idempotency_key="auth-1")

    def void_or_capture(n: int) -> object:
        if n == 0:
            return void(payments, "o-1", "auth-1", "void-1")
        return capture(payments, "o-1", approved, 400, "cap-1")

    voided, captured = race(2, void_or_capture)
    assert isinstance(voided, PaymentResult)
    if isinstance(captured, ApplicationError):  # the void went first and released it all
        assert (voided.amount, captured.details) == (1000, ("authorization_closed",))
    else:
        assert voided.amount == 600
    amounts = {kind: amount for kind, _, amount in ledger(engine, "o-1")}
    assert amounts.get("capture", 0) + amounts["void"] == 1000


def test_refunds_are_bounded_by_every_capture_together(
    engine: Engine, payments: PaymentActivities
) -> None:
    approved = authorize(payments, "o-1", amount=1000)
    capture(payments, "o-1", approved, 400, key("cap"), shipment_id="SHP-1")
    capture(payments, "o-1", approved, 500, key("cap"), shipment_id="SHP-2")
    refund(payments, "o-1", approved, 850, key("ref"))
    assert declined_code(lambda: refund(payments, "o-1", approved, 51, key("ref"))) == (
        "refund_exceeds_capture"
    )
    refund(payments, "o-1", approved, 50, key("ref"))


def test_racing_refunds_with_different_keys_never_exceed_the_capture(
    engine: Engine, payments: PaymentActivities
) -> None:
    approved = authorize(payments, "o-1", amount=1000)
    capture(payments, "o-1", approved, 1000, key("cap"))
    outcomes = race(6, lambda n: refund(payments, "o-1", approved, 300, f"ref-{n}"))
    assert sum(isinstance(o, str) for o in outcomes) == 3
    refunds = [amount for kind, _, amount in ledger(engine, "o-1") if kind == "refund"]
    assert sum(refunds) == 900


def test_refunds_are_in_the_currency_of_the_charge(
    engine: Engine, payments: PaymentActivities
) -> None:
    approved = ActivityEnvironment().run(
        payments.authorize_payment,
        AuthorizePaymentInput(
            order_id="o-eur", token="tok_visa", amount=900, currency="EUR", idempotency_key="a"
        ),
    )
    capture(payments, "o-eur", approved.authorization_id, 900, key("cap"))
    refund(payments, "o-eur", approved.authorization_id, 400, key("ref"))
    with Session(engine) as session:
        currencies = set(
            session.exec(
                select(PaymentTransaction.currency).where(PaymentTransaction.order_id == "o-eur")
            )
        )
    assert currencies == {"EUR"}


def test_an_authorization_expires_its_validity_after_it_is_made(
    engine: Engine, payments: PaymentActivities, clock: Clock
) -> None:
    made = authorization(payments, "o-1", amount=1000)
    assert made.amount == 1000
    assert made.expires_at == clock.now + VALIDITY
    with Session(engine) as session:
        row = session.get(PaymentTransaction, made.authorization_id)
        assert row is not None and row.expires_at is not None
        stored = row.expires_at
    # SQLite hands back naive datetimes; every stored time is UTC.
    assert (stored if stored.tzinfo else stored.replace(tzinfo=UTC)) == made.expires_at


def test_a_retried_authorize_returns_the_same_authorization_and_expiry(
    payments: PaymentActivities, clock: Clock
) -> None:
    first = authorization(payments, "o-1", idempotency_key="auth-key")
    clock.now += timedelta(hours=5)  # the retry comes later; the processor's answer does not
    assert authorization(payments, "o-1", idempotency_key="auth-key") == first


def test_a_capture_just_before_expiry_is_approved_and_one_after_is_declined(
    engine: Engine, payments: PaymentActivities, clock: Clock
) -> None:
    approved = authorize(payments, "o-1", amount=1000)
    clock.now += VALIDITY - timedelta(seconds=1)
    first = capture(payments, "o-1", approved, 400, "cap-1")
    assert first is not None

    clock.now += timedelta(seconds=1)
    with pytest.raises(ApplicationError) as declined:
        capture(payments, "o-1", approved, 400, key("cap"))
    assert (declined.value.type, declined.value.details) == (
        PAYMENT_DECLINED,
        ("authorization_expired",),
    )
    assert declined.value.non_retryable
    # A retry of the capture made in time still gets its first answer.
    assert capture(payments, "o-1", approved, 400, "cap-1") == first
    assert [kind for kind, _, _ in ledger(engine, "o-1")] == ["authorize", "capture"]


def test_a_void_of_an_expired_authorization_is_refused(
    engine: Engine, payments: PaymentActivities, clock: Clock
) -> None:
    authorize(payments, "o-1", amount=1000, idempotency_key="auth-1")
    clock.now += VALIDITY
    with pytest.raises(ApplicationError) as refused:
        void(payments, "o-1", "auth-1", "void-1")
    assert (refused.value.type, refused.value.details) == (
        PAYMENT_DECLINED,
        ("authorization_expired",),
    )
    assert refused.value.non_retryable
    assert ledger(engine, "o-1") == [("authorize", "approved", 1000)]


def test_a_void_of_an_expired_authorization_with_nothing_left_releases_nothing(
    engine: Engine, payments: PaymentActivities, clock: Clock
) -> None:
    approved = authorize(payments, "o-1", amount=1000, idempotency_key="auth-1")
    capture(payments, "o-1", approved, 1000, key("cap"))
    authorize(payments, "o-2", amount=500, idempotency_key="auth-2")
    released = void(payments, "o-2", "auth-2", "void-2")
    clock.now += VALIDITY

    nothing = PaymentResult(transaction_id=None, amount=0)
    assert void(payments, "o-1", "auth-1", key("void")) == nothing  # fully captured
    assert void(payments, "o-2", "auth-2", key("void")) == nothing  # already voided
    assert void(payments, "o-2", "auth-2", "void-2") == released  # a retry: its first answer
    assert void(payments, "o-3", "never-used", key("void")) == nothing


def test_a_refund_after_the_authorization_expired_is_still_made(
    engine: Engine, payments: PaymentActivities, clock: Clock
) -> None:
    approved = authorize(payments, "o-1", amount=1000)
    capture(payments, "o-1", approved, 1000, key("cap"))
    clock.now += VALIDITY + timedelta(days=30)
    assert refund(payments, "o-1", approved, 600, key("ref")) is not None
    assert sorted(amount for kind, _, amount in ledger(engine, "o-1") if kind == "refund") == [600]
