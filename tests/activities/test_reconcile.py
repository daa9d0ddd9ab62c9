"""The reconciliation's rules (plain functions) and its ledger checks against a real database
(SQLite, and PostgreSQL when TEST_POSTGRES_URL is set): batches, resuming from a heartbeat,
checking a batch twice, closing a run once.

The open-orders check needs visibility and is shown in tests/e2e/test_reconciliation.py.
"""

import dataclasses
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

from activities.downloads import DownloadLinks
from activities.notifications import Mailer
from activities.reconcile import ReconcileActivities
from activities.reconcile_checks import (
    RecordedMoney,
    StockLedger,
    order_money,
    status_mismatch,
    stock_row,
    stuck,
)
from models.orders import OrderStatus
from models.reconcile import (
    CheckCounts,
    CheckRequest,
    DiscrepancyKind,
    FinishRequest,
    ReconcileInput,
    RunStarted,
)
from models.tables import (
    OrderRecord,
    PaymentTransaction,
    ReconciliationDiscrepancy,
    SentEmail,
    StockReservation,
)
from tests.activities.email_helpers import SendAtOnce
from workflows import policies

NOW = datetime.now(UTC)


def txn(kind: str, amount: int, auth: str, *, parcel: str | None = None, **more: Any) -> Any:
    # An authorization's own row is the authorization: its id is the one captures name.
    row_id = more.pop("id", auth if kind == "authorize" else f"{kind}-{auth}-{amount}-{parcel}")
    return PaymentTransaction(
        id=row_id,
        idempotency_key=f"key-{row_id}",
        order_id=more.pop("order_id", "ord_1"),
        kind=kind,
        status=more.pop("status", "approved"),
        amount=amount,
        authorization_id=auth,
        shipment_id=parcel,
        created_at=more.pop("created_at", NOW - timedelta(days=1)),
        **more,
    )


def kinds(found: list[Any]) -> list[tuple[str, str]]:
    return [(d.kind.value, d.subject) for d in found]


# ---- the rules -------------------------------------------------------------------------------


def test_an_order_whose_ledger_matches_its_read_model_is_clean() -> None:
    ledger = [
        txn("authorize", 5000, "A1"),
        txn("capture", 3000, "A1", parcel="P1"),
        txn("capture", 2000, "A1", parcel="P2"),
        txn("refund", 500, "A1"),
        txn("capture", 9999, "A1", parcel="P1", status="declined"),  # refused: not money
    ]
    assert order_money("ord_1", ledger, RecordedMoney(captured=5000, refunded=500)) == []


def test_money_beyond_its_bounds_and_a_second_capture_of_a_parcel_are_named() -> None:
    ledger = [
        txn("authorize", 1000, "A1"),
        txn("capture", 800, "A1", parcel="P1"),
        txn("capture", 800, "A1", parcel="P1", id="again"),
        txn("refund", 2000, "A1"),
    ]
    found = order_money("ord_1", ledger, RecordedMoney(captured=800, refunded=2000))
    assert kinds(found) == [
        ("capture_exceeds_authorization", "A1"),
        ("refund_exceeds_capture", "A1"),
        ("duplicate_capture", "ord_1/P1"),
        ("ledger_mismatch", "ord_1"),
    ]
    assert found[-1].detail == "captured 1600 in the ledger, 800 recorded"


def test_a_renewal_s_two_authorizations_are_each_bounded_by_their_own() -> None:
    ledger = [
        txn("authorize", 1000, "A1"),
        txn("authorize", 1000, "A2"),
        txn("capture", 600, "A1", parcel="P1"),
        txn("capture", 600, "A2", parcel="P2"),
    ]
    assert order_money("ord_1", ledger, RecordedMoney(captured=1200, refunded=0)) == []


def test_a_refund_settled_outside_is_recorded_but_not_in_the_ledger() -> None:
    ledger = [txn("authorize", 1000, "A1"), txn("capture", 1000, "A1", parcel="P1")]
    outside = RecordedMoney(captured=1000, refunded=300, settled_outside=True)
    assert order_money("ord_1", ledger, outside) == []
    # Without one, the same figures do not add up.
    assert kinds(order_money("ord_1", ledger, RecordedMoney(1000, 300))) == [
        ("ledger_mismatch", "ord_1")
    ]


def test_stock_adds_up_from_its_opening_balance_and_ledgers() -> None:
    row = StockLedger(
        "BOOK", "WH-EAST", on_hand=10, reserved=2, seeded=8, received=5, committed=4,
        restocked=1, held=2,
    )  # fmt: skip
    assert stock_row(row) == []
    off = dataclasses.replace(row, on_hand=11, reserved=3)
    found = stock_row(off)
    assert kinds(found) == [
        ("stock_on_hand_mismatch", "BOOK@WH-EAST"),
        ("stock_reserved_mismatch", "BOOK@WH-EAST"),
    ]
    assert "the ledgers give 10" in found[0].detail


@pytest.mark.parametrize(
    ("workflow", "searchable", "says"),
    [
        (None, None, "no workflow"),
        ("TERMINATED", "shipped", "workflow is terminated"),
        ("RUNNING", "fulfilling", "search attribute fulfilling"),
    ],
)
def test_an_open_order_disagreeing_with_its_workflow_is_a_status_mismatch(
    workflow: str | None, searchable: str | None, says: str
) -> None:
    found = status_mismatch("ord_1", "shipped", workflow, searchable)
    assert found is not None and found.kind is DiscrepancyKind.STATUS_MISMATCH
    assert says in found.detail
    assert status_mismatch("ord_1", "shipped", "RUNNING", "shipped") is None


def test_an_order_longer_in_its_stage_than_the_stage_can_take_is_stuck() -> None:
    limits = {OrderStatus.RECEIVED: timedelta(hours=1)}
    assert stuck("o", "received", NOW - timedelta(minutes=59), NOW, limits) is None
    late = stuck("o", "received", NOW - timedelta(hours=2), NOW, limits)
    assert late is not None and late.kind is DiscrepancyKind.STUCK_ORDER
    assert "received for 2.0 h" in late.detail
    assert stuck("o", "shipped", NOW - timedelta(days=9), NOW, limits) is None  # no limit


def test_fulfilling_s_limit_is_every_pick_pack_attempt_and_the_carrier_s_booking() -> None:
    # Five attempts of up to 4 h with 5 s, 10 s, 20 s, 40 s between them.
    assert policies.longest(policies.WAREHOUSE) == timedelta(hours=20, seconds=75)
    assert policies.longest(policies.CARRIER) > timedelta(minutes=30)


# ---- the checks, on a real database ------------------------------------------------------------


class _NoClient:
    """The ledger checks never call Temporal."""


def activities(engine: Engine, sent: list[EmailMessage]) -> ReconcileActivities:
    mailer = Mailer(
        sender="orders@shop.example",
        links=DownloadLinks("https://shop.example", "secret", ttl=timedelta(days=1)),
        support_mailbox="support@shop.example",
    )
    return ReconcileActivities(
        engine,
        _NoClient(),  # type: ignore[arg-type]
        mailer,
        SendAtOnce(engine, sent.append),
        public_base_url="https://shop.example",
    )


def record(order_id: str, captured: int, refunded: int = 0, **more: Any) -> OrderRecord:
    return OrderRecord(
        order_id=order_id,
        customer_id="cus_ada",
        status="completed",
        captured=captured,
        refunded=refunded,
        placed_at=NOW - timedelta(days=2),
        updated_at=more.pop("updated_at", NOW - timedelta(days=1)),
        view_json=more.pop("view_json", '{"refunds": []}'),
    )


def a_day_of_orders(engine: Engine) -> None:
    with Session(engine) as session:
        for order_id in ("ord_a", "ord_b", "ord_c"):  # clean
            session.add(record(order_id, 1000))
            session.add(txn("authorize", 1000, f"A-{order_id}", order_id=order_id))
            session.add(txn("capture", 1000, f"A-{order_id}", parcel="P1", order_id=order_id))
        session.add(record("ord_bad", 600))  # one parcel captured twice
        session.add(txn("authorize", 1000, "A-bad", order_id="ord_bad"))
        session.add(txn("capture", 600, "A-bad", parcel="P1", order_id="ord_bad"))
        session.add(txn("capture", 600, "A-bad", parcel="P1", order_id="ord_bad", id="twice"))
        # Changed a minute ago, mid-way between its ledger and its read model: not yet judged.
        session.add(record("ord_now", 0, updated_at=NOW - timedelta(minutes=1)))
        session.add(txn("authorize", 500, "A-now", order_id="ord_now", created_at=NOW))
        session.add(txn("capture", 500, "A-now", parcel="P1", order_id="ord_now", created_at=NOW))
        # Units held for an order that the stock row does not count as reserved.
        session.add(
            StockReservation(order_id="ord_a", sku="BOOK-DUNE", warehouse="WH-EAST", quantity=2)
        )
        session.commit()


def run_started() -> RunStarted:
    return RunStarted(run_id="rec_test", started_at=NOW, cutoff=NOW - timedelta(minutes=10))


def stored(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.exec(select(ReconciliationDiscrepancy)).all()
        return sorted((row.kind, row.subject) for row in rows)


def test_the_ledger_checks_page_through_batches_and_store_each_discrepancy_once(
    engine: Engine,
) -> None:
    a_day_of_orders(engine)
    sent: list[EmailMessage] = []
    checks = activities(engine, sent)
    env = ActivityEnvironment()
    request = CheckRequest(run=run_started(), settings=ReconcileInput(batch_size=2))

    begun = env.run(checks.begin, ReconcileInput(run_id="rec_test", settle=timedelta(0)))
    assert begun.run_id == "rec_test"
    payments = env.run(checks.check_payments, request)
    assert payments.checked == {"orders": 4, "ledger_rows": 9, "orders_settling": 1}
    stock = env.run(checks.check_stock, request)
    assert stock.checked == {"stock_rows": 6}
    # A check run again (a retried attempt) finds the same and stores nothing twice.
    env.run(checks.check_payments, request)
    assert stored(engine) == [
        ("capture_exceeds_authorization", "A-bad"),
        ("duplicate_capture", "ord_bad/P1"),
        ("ledger_mismatch", "ord_bad"),
        ("stock_reserved_mismatch", "BOOK-DUNE@WH-EAST"),
    ]

    counts = CheckCounts(checked={**payments.checked, **stock.checked})
    finished = env.run(checks.finish, FinishRequest(run=begun, counts=counts))
    assert finished.status == "finished"
    assert finished.found == {
        "capture_exceeds_authorization": 1,
        "duplicate_capture": 1,
        "ledger_mismatch": 1,
        "stock_reserved_mismatch": 1,
    }
    # Closed once: a retried finish neither emails nor counts again.
    env.run(checks.finish, FinishRequest(run=begun, counts=counts))
    (email,) = sent
    assert email["To"] == "support@shop.example"
    assert "4 discrepancies" in str(email["Subject"])
    assert "duplicate_capture ord_bad/P1" in email.get_content()
    with Session(engine) as session:
        assert len(session.exec(select(SentEmail)).all()) == 1


def test_a_retried_check_carries_on_from_its_last_heartbeat(engine: Engine) -> None:
    a_day_of_orders(engine)
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    checks = activities(engine, [])
    request = CheckRequest(run=run_started(), settings=ReconcileInput(batch_size=2))

    env.info = dataclasses.replace(env.info, heartbeat_details=["ord_b", {"orders": 2}])
    resumed = env.run(checks.check_payments, request)
    # ord_a and ord_b were checked by the attempt before; ord_bad, ord_c and ord_now remain.
    assert resumed.checked == {"orders": 4, "ledger_rows": 5, "orders_settling": 1}
    assert [cursor for cursor, _ in beats] == ["ord_c", "ord_now"]


def test_a_run_with_nothing_wrong_closes_quietly(engine: Engine) -> None:
    sent: list[EmailMessage] = []
    checks = activities(engine, sent)
    env = ActivityEnvironment()
    begun = env.run(checks.begin, ReconcileInput(run_id="rec_quiet"))
    request = CheckRequest(run=begun, settings=ReconcileInput())
    counts = env.run(checks.check_stock, request)
    finished = env.run(checks.finish, FinishRequest(run=begun, counts=counts))
    assert (finished.status, finished.found, sent) == ("finished", {}, [])
