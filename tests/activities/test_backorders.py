"""The backorder queue and stock receipts against a real database (SQLite, and PostgreSQL
when configured): who waits, who a receipt serves and in what order, retries and races of
receipts, and a release leaving the queue."""

from collections.abc import Callable
from datetime import UTC, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import OUT_OF_STOCK, UNKNOWN_SKU
from activities.inventory import InventoryActivities
from models.activities import (
    FilledBackorder,
    OrderRef,
    ReceiveStockInput,
    ReserveStockInput,
    StockLevel,
    StockReceiptResult,
)
from models.orders import OrderItem
from models.tables import Backorder, StockReceipt
from tests.activities.races import race
from tests.activities.stock_helpers import (
    EAST,
    OPENED,
    PREORDER,
    WEST,
    assert_out_of_stock,
    holds,
    parcel,
    reserve_input,
    stock,
    stock_product,
)


def may_wait(order_id: str, minute: int, **items: int) -> ReserveStockInput:
    """A new order, placed `minute` minutes after OPENED, that may wait in the queue."""
    return ReserveStockInput(
        order_id=order_id,
        items=[OrderItem(sku=sku.replace("_", "-"), quantity=qty) for sku, qty in items.items()],
        allow_backorder=True,
        placed_at=OPENED + timedelta(minutes=minute),
    )


def receipt(
    receipt_id: str, add: int, sku: str = PREORDER, warehouse: str = EAST
) -> ReceiveStockInput:
    return ReceiveStockInput(
        receipt_id=receipt_id, sku=sku, warehouse=warehouse, add=add, received_by="ops"
    )


def filled_ids(result: StockReceiptResult) -> list[str]:
    return [filled.order_id for filled in result.filled]


def queue_status(engine: Engine, order_id: str) -> str | None:
    with Session(engine) as session:
        row = session.get(Backorder, order_id)
        return None if row is None else row.status


def test_a_short_backorderable_order_waits_in_the_queue_holding_nothing(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    request = may_wait("o-1", 0, BOOK_DUNE=1, BOOK_PREORDER=2, EBOOK_DUNE=1)
    reservation = env.run(inventory.reserve_stock, request)

    assert reservation.backordered == [PREORDER]
    assert reservation.parcels == []
    assert [line.sku for line in reservation.lines] == ["BOOK-DUNE", PREORDER, "EBOOK-DUNE"]
    assert holds(engine, "o-1") == []
    assert stock(engine, "BOOK-DUNE", EAST) == (500_000, 0)  # not even the line on hand
    with Session(engine) as session:
        row = session.get(Backorder, "o-1")
        assert row is not None
        # The whole order's physical units, served together; the e-book needs none.
        assert (row.status, row.wanted) == ("waiting", {"BOOK-DUNE": 1, PREORDER: 2})
        assert row.placed_at.replace(tzinfo=UTC) == OPENED
    assert env.run(inventory.reserve_stock, request) == reservation  # a retry: the same


def test_a_short_line_that_may_not_wait_is_still_out_of_stock(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    with pytest.raises(ApplicationError) as soldout:
        ActivityEnvironment().run(
            inventory.reserve_stock, may_wait("o-1", 0, BOOK_PREORDER=1, BOOK_SOLDOUT=1)
        )
    assert_out_of_stock([soldout.value], "BOOK-SOLDOUT")
    # An order that may not wait (an exchange) is refused a backorderable SKU that is short.
    with pytest.raises(ApplicationError) as no_wait:
        ActivityEnvironment().run(inventory.reserve_stock, reserve_input("o-2", BOOK_PREORDER=1))
    assert_out_of_stock([no_wait.value], PREORDER)
    assert queue_status(engine, "o-1") is None
    assert queue_status(engine, "o-2") is None


def test_a_new_order_behind_a_waiting_one_waits_even_with_stock_on_hand(engine: Engine) -> None:
    stock_product(engine, "PRE-FEW", backorderable=True, WH_EAST=1)
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    env.run(inventory.reserve_stock, may_wait("o-1", 0, PRE_FEW=2))

    later = env.run(inventory.reserve_stock, may_wait("o-2", 1, PRE_FEW=1, BOOK_DUNE=1))
    assert (later.backordered, later.parcels) == (["PRE-FEW"], [])
    assert stock(engine, "PRE-FEW", EAST) == (1, 0)
    # An order wanting none of the queue's SKUs is not held up by it.
    other = env.run(inventory.reserve_stock, may_wait("o-3", 2, BOOK_DUNE=1))
    assert (other.backordered, other.parcels) == ([], [parcel(EAST, BOOK_DUNE=1)])


def test_a_receipt_serves_the_queue_strictly_oldest_first_whole_orders_only(
    engine: Engine,
) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    # Joined out of turn: the queue's order is the orders' placing order.
    env.run(inventory.reserve_stock, may_wait("o-2", 2, BOOK_PREORDER=1))
    env.run(inventory.reserve_stock, may_wait("o-1", 1, BOOK_PREORDER=2, BOOK_NEUROMANCER=1))
    env.run(inventory.reserve_stock, may_wait("o-3", 3, BOOK_PREORDER=1))

    # One unit: o-2 or o-3 could take it, but it is the oldest order's, who needs two.
    first = env.run(inventory.receive_stock, receipt("r-1", 1))
    assert filled_ids(first) == []
    assert first.stock == [StockLevel(warehouse=EAST, on_hand=1, reserved=0)]

    second = env.run(inventory.receive_stock, receipt("r-2", 1))
    assert second.filled == [
        FilledBackorder(order_id="o-1", parcels=[parcel(EAST, BOOK_PREORDER=2, BOOK_NEUROMANCER=1)])
    ]
    assert holds(engine, "o-1") == [
        ("BOOK-NEUROMANCER", EAST, 1, "held"),
        (PREORDER, EAST, 2, "held"),
    ]
    assert second.stock == [StockLevel(warehouse=EAST, on_hand=2, reserved=2)]

    third = env.run(inventory.receive_stock, receipt("r-3", 2, warehouse=WEST))
    assert third.filled == [
        FilledBackorder(order_id="o-2", parcels=[parcel(WEST, BOOK_PREORDER=1)]),
        FilledBackorder(order_id="o-3", parcels=[parcel(WEST, BOOK_PREORDER=1)]),
    ]
    assert third.stock == [
        StockLevel(warehouse=EAST, on_hand=2, reserved=2),
        StockLevel(warehouse=WEST, on_hand=2, reserved=2),
    ]
    assert [queue_status(engine, o) for o in ("o-1", "o-2", "o-3")] == ["filled"] * 3
    # A retried reservation of a filled order answers the units the receipt holds for it.
    retried = env.run(inventory.reserve_stock, may_wait("o-2", 2, BOOK_PREORDER=1))
    assert (retried.backordered, retried.parcels) == ([], [parcel(WEST, BOOK_PREORDER=1)])


def test_the_ledger_records_what_arrived_and_whom_it_served(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    for n in range(3):
        env.run(inventory.reserve_stock, may_wait(f"o-{n}", n, BOOK_PREORDER=1))
    env.run(inventory.receive_stock, receipt("r-1", 2))

    with Session(engine) as session:
        row = session.get(StockReceipt, "r-1")
        assert row is not None
        assert (row.sku, row.warehouse, row.quantity, row.received_by, row.filled) == (
            PREORDER,
            EAST,
            2,
            "ops",
            ["o-0", "o-1"],
        )
        served = session.exec(select(Backorder).where(Backorder.receipt_id == "r-1")).all()
        assert sorted(b.order_id for b in served) == ["o-0", "o-1"]
    assert queue_status(engine, "o-2") == "waiting"


def test_an_order_for_other_skus_is_not_held_up_by_an_older_one(engine: Engine) -> None:
    stock_product(engine, "PRE-OTHER", backorderable=True)
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    env.run(inventory.reserve_stock, may_wait("o-1", 0, BOOK_PREORDER=5))
    env.run(inventory.reserve_stock, may_wait("o-2", 1, PRE_OTHER=1))

    assert filled_ids(env.run(inventory.receive_stock, receipt("r-1", 1))) == []
    served = env.run(inventory.receive_stock, receipt("r-2", 1, sku="PRE-OTHER"))
    assert filled_ids(served) == ["o-2"]
    assert queue_status(engine, "o-1") == "waiting"


def test_a_retried_receipt_adds_nothing_and_answers_the_same(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    env.run(inventory.reserve_stock, may_wait("o-1", 0, BOOK_PREORDER=1))
    first = env.run(inventory.receive_stock, receipt("r-1", 3))

    assert env.run(inventory.receive_stock, receipt("r-1", 3)) == first
    assert filled_ids(first) == ["o-1"]
    assert stock(engine, PREORDER, EAST) == (3, 1)
    # A later retry still serves no one new, even with an order waiting; its stock is now's.
    env.run(inventory.reserve_stock, may_wait("o-2", 1, BOOK_PREORDER=5))
    later = env.run(inventory.receive_stock, receipt("r-1", 3))
    assert (later.filled, later.added) == (first.filled, 3)
    assert stock(engine, PREORDER, EAST) == (3, 1)
    assert queue_status(engine, "o-2") == "waiting"
    with Session(engine) as session:
        assert len(session.exec(select(StockReceipt)).all()) == 1


def test_racing_attempts_of_one_receipt_add_its_units_once(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    ActivityEnvironment().run(inventory.reserve_stock, may_wait("o-1", 0, BOOK_PREORDER=2))
    outcomes = race(
        4, lambda _: ActivityEnvironment().run(inventory.receive_stock, receipt("r-1", 2))
    )

    assert all(o == outcomes[0] for o in outcomes), outcomes
    assert isinstance(outcomes[0], StockReceiptResult)
    assert filled_ids(outcomes[0]) == ["o-1"]
    assert stock(engine, PREORDER, EAST) == (2, 2)


def test_racing_receipts_fill_each_waiting_order_once(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    racers = 6
    for n in range(racers):
        ActivityEnvironment().run(inventory.reserve_stock, may_wait(f"o-{n}", n, BOOK_PREORDER=1))
    outcomes = race(
        racers,
        lambda n: ActivityEnvironment().run(inventory.receive_stock, receipt(f"r-{n}", 1)),
    )

    served = [
        o
        for outcome in outcomes
        if isinstance(outcome, StockReceiptResult)
        for o in filled_ids(outcome)
    ]
    assert sorted(served) == [f"o-{n}" for n in range(racers)], outcomes
    assert stock(engine, PREORDER, EAST) == (racers, racers)


def test_releasing_a_waiting_order_takes_it_out_of_the_queue(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    first = may_wait("o-1", 0, BOOK_PREORDER=2)
    env.run(inventory.reserve_stock, first)
    env.run(inventory.reserve_stock, may_wait("o-2", 1, BOOK_PREORDER=1))

    assert env.run(inventory.release_stock, OrderRef(order_id="o-1")) == 0
    assert env.run(inventory.release_stock, OrderRef(order_id="o-1")) == 0
    assert queue_status(engine, "o-1") == "left"
    # One unit: with o-1 gone it is o-2's.
    assert filled_ids(env.run(inventory.receive_stock, receipt("r-1", 1))) == ["o-2"]
    assert queue_status(engine, "o-1") == "left"
    # A late retry of o-1's reservation neither fails nor queues it again.
    retried = env.run(inventory.reserve_stock, first)
    assert (retried.backordered, retried.parcels) == ([PREORDER], [])
    assert queue_status(engine, "o-1") == "left"


def test_releasing_a_filled_order_gives_its_units_back(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    env.run(inventory.reserve_stock, may_wait("o-1", 0, BOOK_PREORDER=2, BOOK_EARTHSEA=1))
    env.run(inventory.receive_stock, receipt("r-1", 2, warehouse=WEST))
    assert stock(engine, PREORDER, WEST) == (2, 2)

    assert env.run(inventory.release_stock, OrderRef(order_id="o-1")) == 3
    assert stock(engine, PREORDER, WEST) == (2, 0)
    assert stock(engine, "BOOK-EARTHSEA", WEST) == (200, 0)
    assert holds(engine, "o-1") == [
        ("BOOK-EARTHSEA", WEST, 1, "released"),
        (PREORDER, WEST, 2, "released"),
    ]
    assert queue_status(engine, "o-1") == "filled"


def test_a_release_racing_a_receipt_leaves_nothing_held(engine: Engine) -> None:
    """Whichever goes first, the order ends out of the queue and holding no units."""
    inventory = InventoryActivities(engine)
    ActivityEnvironment().run(inventory.reserve_stock, may_wait("o-1", 0, BOOK_PREORDER=1))
    calls: list[Callable[[], object]] = [
        lambda: ActivityEnvironment().run(inventory.receive_stock, receipt("r-1", 1)),
        lambda: ActivityEnvironment().run(inventory.release_stock, OrderRef(order_id="o-1")),
    ]
    race(2, lambda n: calls[n]())

    assert stock(engine, PREORDER, EAST) == (1, 0)
    assert queue_status(engine, "o-1") in ("left", "filled")
    assert all(status == "released" for *_, status in holds(engine, "o-1"))


def test_a_receipt_racing_orders_for_the_same_stock_rows_never_deadlocks(engine: Engine) -> None:
    """The receipt shelves PRE-Z in WH-WEST and holds Dune there for the queue, while orders
    that may not wait hold Dune, then PRE-Z, in that warehouse: every one of them locks the
    stock rows in one order, so none waits on another in a cycle."""
    stock_product(engine, "PRE-Z", backorderable=True, WH_WEST=5)
    inventory = InventoryActivities(engine)
    ActivityEnvironment().run(inventory.reserve_stock, may_wait("o-q", 0, PRE_Z=10, BOOK_DUNE=1))
    racers = 8

    def attempt(n: int) -> object:
        env = ActivityEnvironment()
        if n == 0:
            return env.run(inventory.receive_stock, receipt("r-1", 10, "PRE-Z", WEST))
        return env.run(inventory.reserve_stock, reserve_input(f"o-{n}", PRE_Z=1, BOOK_DUNE=1))

    outcomes = race(racers, attempt)  # a deadlock would raise here, not as a business outcome

    held = {key: 0 for key in [("PRE-Z", WEST), ("BOOK-DUNE", WEST)]}
    for order in ["o-q", *(f"o-{n}" for n in range(1, racers))]:
        for sku, warehouse, units, status in holds(engine, order):
            assert (warehouse, status) == (WEST, "held"), outcomes
            held[(sku, warehouse)] += units
    assert stock(engine, "PRE-Z", WEST) == (15, held[("PRE-Z", WEST)])
    assert stock(engine, "BOOK-DUNE", WEST) == (500_000, held[("BOOK-DUNE", WEST)])


def test_a_receipt_for_what_cannot_be_stocked_is_refused(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    refusals = [
        (receipt("r-1", 1, sku="BOOK-NOPE"), UNKNOWN_SKU, "unknown_sku"),
        (receipt("r-2", 1, warehouse="WH-NOPE"), UNKNOWN_SKU, "unknown_warehouse"),
        (receipt("r-3", 1, sku="EBOOK-DUNE"), OUT_OF_STOCK, "digital_product"),
    ]
    for request, error_type, code in refusals:
        with pytest.raises(ApplicationError) as refused:
            ActivityEnvironment().run(inventory.receive_stock, request)
        assert (refused.value.type, refused.value.non_retryable) == (error_type, True)
        assert refused.value.details == (code,)
    with Session(engine) as session:
        assert session.exec(select(StockReceipt)).all() == []
