"""PaymentActivities on the simulated card processor's ledger (SQLite, and PostgreSQL)."""

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import PAYMENT_DECLINED, REFUND_REFUSED
from activities.payments import GatewayUnavailable, PaymentActivities, SimulatedCardProcessor
from models.activities import (
    AuthorizePaymentInput,
    CapturePaymentInput,
    RefundPaymentInput,
    VoidPaymentInput,
)
from models.tables import PaymentTransaction

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


def authorize(
    payments: PaymentActivities,
    order_id: str,
    *,
    token: str = "tok_visa",
    amount: int = 2398,
    idempotency_key: str | None = None,
) -> str:
    authorization = ActivityEnvironment().run(
        payments.authorize_payment,
        AuthorizePaymentInput(
            order_id=order_id,
            token=token,
            amount=amount,
            currency="USD",
            idempotency_key=idempotency_key or key("auth"),
        ),
    )
    return authorization.authorization_id


def capture(
    payments: PaymentActivities, order_id: str, authorization_id: str, amount: int, k: str
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
            ),
        )
        .transaction_id
    )


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


@pytest.fixture
def payments(engine: Engine) -> PaymentActivities:
    return PaymentActivities(SimulatedCardProcessor(engine))


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
        # Not an ApplicationError: the activity's retry policy retries it.
        with pytest.raises(GatewayUnavailable):
            authorize(payments, "o-1", token="tok_gatewayFlaky", idempotency_key="flaky-key")
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
    void = VoidPaymentInput(order_id="o-1", authorize_key="auth-key", idempotency_key="void-key")
    env = ActivityEnvironment()
    first = env.run(payments.void_payment, void)
    assert env.run(payments.void_payment, void) == first
    with Session(engine) as session:
        voids = session.exec(
            select(PaymentTransaction).where(PaymentTransaction.kind == "void")
        ).all()
    assert [(v.authorization_id, v.amount) for v in voids] == [(approved, 1500)]

    # Cancelled before the authorize ever ran (or it was declined): nothing to void.
    nothing = VoidPaymentInput(order_id="o-2", authorize_key="never-used", idempotency_key="v2")
    assert env.run(payments.void_payment, nothing).transaction_id is None
    assert ledger(engine, "o-2") == []


def test_an_authorization_is_captured_once_and_never_after_a_void(
    engine: Engine, payments: PaymentActivities
) -> None:
    approved = authorize(payments, "o-1", amount=1000)
    capture(payments, "o-1", approved, 1000, key("cap"))
    with pytest.raises(ApplicationError) as twice:
        capture(payments, "o-1", approved, 1000, key("cap"))  # a new key: a second charge
    assert twice.value.details == ("authorization_closed",)

    authorize(payments, "o-2", amount=500, idempotency_key="auth-2")
    voided = VoidPaymentInput(order_id="o-2", authorize_key="auth-2", idempotency_key="void-2")
    ActivityEnvironment().run(payments.void_payment, voided)
    with Session(engine) as session:
        auth = session.exec(
            select(PaymentTransaction).where(PaymentTransaction.idempotency_key == "auth-2")
        ).one()
    with pytest.raises(ApplicationError) as after_void:
        capture(payments, "o-2", auth.id, 500, key("cap"))
    assert after_void.value.details == ("authorization_closed",)


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
