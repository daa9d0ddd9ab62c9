"""InventoryActivities against a real database (SQLite, and PostgreSQL when configured)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import OUT_OF_STOCK, UNKNOWN_SKU
from activities.inventory import InventoryActivities
from models.activities import OrderRef, Reservation, ReserveStockInput
from models.orders import OrderItem
from models.tables import Product, StockReservation


def reserve_input(order_id: str, **items: int) -> ReserveStockInput:
    return ReserveStockInput(
        order_id=order_id,
        items=[OrderItem(sku=sku.replace("_", "-"), quantity=qty) for sku, qty in items.items()],
    )


def stock(engine: Engine, sku: str) -> tuple[int, int]:
    """(on hand, reserved)"""
    with Session(engine) as session:
        product = session.get(Product, sku)
        assert product is not None
        return product.stock_on_hand, product.stock_reserved


def holds(engine: Engine, order_id: str) -> list[tuple[str, int, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(StockReservation).where(StockReservation.order_id == order_id)
        ).all()
        return sorted((row.sku, row.quantity, row.status) for row in rows)


def test_racing_orders_for_the_last_copy_exactly_one_wins(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    racers = 6
    start = threading.Barrier(racers)

    def reserve(order_id: str) -> Reservation | ApplicationError:
        env = ActivityEnvironment()
        start.wait()
        try:
            return env.run(inventory.reserve_stock, reserve_input(order_id, BOOK_LASTCOPY=1))
        except ApplicationError as err:
            return err

    with ThreadPoolExecutor(max_workers=racers) as pool:
        outcomes = list(pool.map(reserve, [f"race-{n}" for n in range(racers)]))

    winners = [o for o in outcomes if isinstance(o, Reservation)]
    losers = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert len(winners) == 1, outcomes
    assert len(losers) == racers - 1, outcomes
    for lost in losers:
        assert lost.type == OUT_OF_STOCK
        assert lost.non_retryable
        assert lost.details == ("out_of_stock",)
        assert "BOOK-LASTCOPY" in lost.message
    assert stock(engine, "BOOK-LASTCOPY") == (1, 1)
    assert holds(engine, winners[0].order_id) == [("BOOK-LASTCOPY", 1, "held")]


def test_reserve_prices_from_the_catalog_and_holds_only_physical_lines(engine: Engine) -> None:
    reservation = ActivityEnvironment().run(
        InventoryActivities(engine).reserve_stock,
        reserve_input("o-1", BOOK_DUNE=2, EBOOK_DUNE=1),
    )

    assert [(line.sku, line.unit_price, line.digital) for line in reservation.lines] == [
        ("BOOK-DUNE", 1899, False),
        ("EBOOK-DUNE", 999, True),
    ]
    assert holds(engine, "o-1") == [("BOOK-DUNE", 2, "held")]
    assert stock(engine, "BOOK-DUNE")[1] == 2


def test_reserve_is_all_or_nothing(engine: Engine) -> None:
    with pytest.raises(ApplicationError) as failed:
        ActivityEnvironment().run(
            InventoryActivities(engine).reserve_stock,
            reserve_input("o-1", BOOK_DUNE=1, BOOK_SOLDOUT=1),
        )

    assert failed.value.type == OUT_OF_STOCK
    assert "BOOK-SOLDOUT" in failed.value.message
    assert stock(engine, "BOOK-DUNE")[1] == 0  # the line that fitted was not held either
    assert holds(engine, "o-1") == []


def test_unknown_sku_is_a_business_failure(engine: Engine) -> None:
    with pytest.raises(ApplicationError) as failed:
        ActivityEnvironment().run(
            InventoryActivities(engine).reserve_stock, reserve_input("o-1", BOOK_NOPE=1)
        )
    assert (failed.value.type, failed.value.non_retryable) == (UNKNOWN_SKU, True)


def test_a_retried_reserve_holds_once(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    first = env.run(inventory.reserve_stock, reserve_input("o-1", BOOK_NEUROMANCER=3))
    again = env.run(inventory.reserve_stock, reserve_input("o-1", BOOK_NEUROMANCER=3))

    assert again == first
    assert stock(engine, "BOOK-NEUROMANCER") == (500, 3)
    assert holds(engine, "o-1") == [("BOOK-NEUROMANCER", 3, "held")]


def test_release_gives_the_stock_back_once(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    env.run(inventory.reserve_stock, reserve_input("o-1", BOOK_NEUROMANCER=2))

    assert env.run(inventory.release_stock, OrderRef(order_id="o-1")) == 2
    assert env.run(inventory.release_stock, OrderRef(order_id="o-1")) == 0
    assert stock(engine, "BOOK-NEUROMANCER") == (500, 0)
    assert holds(engine, "o-1") == [("BOOK-NEUROMANCER", 2, "released")]


def test_commit_takes_the_stock_off_hand_once(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    env.run(inventory.reserve_stock, reserve_input("o-1", BOOK_NEUROMANCER=2))

    assert env.run(inventory.commit_stock, OrderRef(order_id="o-1")) == 2
    assert env.run(inventory.commit_stock, OrderRef(order_id="o-1")) == 0
    # Shipped stock is gone for good: a late release must not give it back.
    assert env.run(inventory.release_stock, OrderRef(order_id="o-1")) == 0
    assert stock(engine, "BOOK-NEUROMANCER") == (498, 0)
    assert holds(engine, "o-1") == [("BOOK-NEUROMANCER", 2, "committed")]


def test_concurrent_releases_of_one_order_give_the_stock_back_once(engine: Engine) -> None:
    """A timed-out attempt still running beside its retry must not release twice."""
    inventory = InventoryActivities(engine)
    ActivityEnvironment().run(inventory.reserve_stock, reserve_input("o-1", BOOK_NEUROMANCER=5))
    racers = 4
    start = threading.Barrier(racers)

    def release(_: int) -> int:
        env = ActivityEnvironment()
        start.wait()
        return env.run(inventory.release_stock, OrderRef(order_id="o-1"))

    with ThreadPoolExecutor(max_workers=racers) as pool:
        released = list(pool.map(release, range(racers)))

    assert sorted(released) == [0] * (racers - 1) + [5]
    assert stock(engine, "BOOK-NEUROMANCER") == (500, 0)
