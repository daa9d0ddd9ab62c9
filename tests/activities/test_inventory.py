"""InventoryActivities against a real database (SQLite, and PostgreSQL when configured):
reservations across warehouses, their races, commits, releases and restocks. The backorder
queue and stock receipts are in test_backorders.py."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import OUT_OF_STOCK, UNKNOWN_SKU
from activities.inventory import InventoryActivities
from models.activities import (
    CommitStockInput,
    OrderRef,
    Reservation,
    RestockInput,
)
from models.tables import Stock
from tests.activities.races import race
from tests.activities.stock_helpers import (
    EAST,
    WEST,
    assert_out_of_stock,
    holds,
    parcel,
    reserve_input,
    stock,
    stock_product,
)

# ---- races -----------------------------------------------------------------------------------


def test_racing_orders_for_the_last_copy_exactly_one_wins(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    racers = 6
    outcomes = race(
        racers,
        lambda n: ActivityEnvironment().run(
            inventory.reserve_stock, reserve_input(f"race-{n}", BOOK_LASTCOPY=1)
        ),
    )

    winners = [o for o in outcomes if isinstance(o, Reservation)]
    assert len(winners) == 1, outcomes
    assert_out_of_stock([o for o in outcomes if o not in winners], "BOOK-LASTCOPY")
    assert winners[0].parcels == [parcel(EAST, BOOK_LASTCOPY=1)]
    assert stock(engine, "BOOK-LASTCOPY", EAST) == (1, 1)
    assert holds(engine, winners[0].order_id) == [("BOOK-LASTCOPY", EAST, 1, "held")]


def test_racing_orders_for_one_unit_in_each_of_two_warehouses_exactly_two_win(
    engine: Engine,
) -> None:
    """A loser of the first warehouse's unit re-reads and may still win the second's."""
    stock_product(engine, "TWO-COPIES", WH_EAST=1, WH_WEST=1)
    inventory = InventoryActivities(engine)
    racers = 8
    outcomes = race(
        racers,
        lambda n: ActivityEnvironment().run(
            inventory.reserve_stock, reserve_input(f"race-{n}", TWO_COPIES=1)
        ),
    )

    winners = [o for o in outcomes if isinstance(o, Reservation)]
    assert len(winners) == 2, outcomes
    assert_out_of_stock([o for o in outcomes if o not in winners], "TWO-COPIES")
    assert sorted(w.parcels[0].warehouse for w in winners) == [EAST, WEST]
    assert stock(engine, "TWO-COPIES", EAST) == (1, 1)
    assert stock(engine, "TWO-COPIES", WEST) == (1, 1)


def test_racing_orders_for_both_split_units_exactly_one_wins_both(engine: Engine) -> None:
    stock_product(engine, "TWO-COPIES", WH_EAST=1, WH_WEST=1)
    inventory = InventoryActivities(engine)
    racers = 6
    outcomes = race(
        racers,
        lambda n: ActivityEnvironment().run(
            inventory.reserve_stock, reserve_input(f"race-{n}", TWO_COPIES=2)
        ),
    )

    winners = [o for o in outcomes if isinstance(o, Reservation)]
    assert len(winners) == 1, outcomes
    assert_out_of_stock([o for o in outcomes if o not in winners], "TWO-COPIES")
    assert winners[0].parcels == [parcel(EAST, TWO_COPIES=1), parcel(WEST, TWO_COPIES=1)]
    assert holds(engine, winners[0].order_id) == [
        ("TWO-COPIES", EAST, 1, "held"),
        ("TWO-COPIES", WEST, 1, "held"),
    ]


def test_concurrent_attempts_of_one_reservation_hold_once(engine: Engine) -> None:
    """A timed-out attempt still running beside its retry must not hold twice."""
    inventory = InventoryActivities(engine)
    racers = 4
    outcomes = race(
        racers,
        lambda _: ActivityEnvironment().run(
            inventory.reserve_stock, reserve_input("o-1", BOOK_DUNE=2, BOOK_EARTHSEA=1)
        ),
    )

    assert all(o == outcomes[0] for o in outcomes), outcomes
    assert isinstance(outcomes[0], Reservation)
    assert outcomes[0].parcels == [parcel(WEST, BOOK_DUNE=2, BOOK_EARTHSEA=1)]
    assert stock(engine, "BOOK-DUNE", WEST) == (500_000, 2)
    assert stock(engine, "BOOK-DUNE", EAST) == (500_000, 0)


def test_concurrent_releases_of_one_order_give_the_stock_back_once(engine: Engine) -> None:
    """A timed-out attempt still running beside its retry must not release twice."""
    inventory = InventoryActivities(engine)
    ActivityEnvironment().run(
        inventory.reserve_stock, reserve_input("o-1", BOOK_NEUROMANCER=5, BOOK_EARTHSEA=1)
    )
    racers = 4
    start = threading.Barrier(racers)

    def release(_: int) -> int:
        env = ActivityEnvironment()
        start.wait()
        return env.run(inventory.release_stock, OrderRef(order_id="o-1"))

    with ThreadPoolExecutor(max_workers=racers) as pool:
        released = list(pool.map(release, range(racers)))

    assert sorted(released) == [0] * (racers - 1) + [6]
    assert stock(engine, "BOOK-NEUROMANCER", EAST) == (500, 0)
    assert stock(engine, "BOOK-EARTHSEA", WEST) == (200, 0)


# ---- reserving -------------------------------------------------------------------------------


def test_reserve_prices_from_the_catalog_and_holds_only_physical_lines(engine: Engine) -> None:
    reservation = ActivityEnvironment().run(
        InventoryActivities(engine).reserve_stock,
        reserve_input("o-1", BOOK_DUNE=2, EBOOK_DUNE=1),
    )

    assert [(line.sku, line.unit_price, line.digital) for line in reservation.lines] == [
        ("BOOK-DUNE", 1899, False),
        ("EBOOK-DUNE", 999, True),
    ]
    assert reservation.parcels == [parcel(EAST, BOOK_DUNE=2)]  # the e-book is in no parcel
    assert holds(engine, "o-1") == [("BOOK-DUNE", EAST, 2, "held")]
    assert stock(engine, "BOOK-DUNE", EAST) == (500_000, 2)


def test_a_digital_only_order_needs_no_parcel(engine: Engine) -> None:
    reservation = ActivityEnvironment().run(
        InventoryActivities(engine).reserve_stock, reserve_input("o-1", EBOOK_DUNE=1)
    )
    assert reservation.parcels == []
    assert holds(engine, "o-1") == []


def test_an_order_one_warehouse_holds_ships_from_it_alone(engine: Engine) -> None:
    reservation = ActivityEnvironment().run(
        InventoryActivities(engine).reserve_stock,
        reserve_input("o-1", BOOK_EARTHSEA=1, BOOK_DUNE=3),
    )
    # WH-EAST ranks first but has no Earthsea: one parcel from WH-WEST beats two.
    assert reservation.parcels == [parcel(WEST, BOOK_EARTHSEA=1, BOOK_DUNE=3)]


def test_an_order_no_warehouse_holds_alone_ships_in_parcels_in_rank_order(
    engine: Engine,
) -> None:
    reservation = ActivityEnvironment().run(
        InventoryActivities(engine).reserve_stock,
        reserve_input("o-1", BOOK_EARTHSEA=1, BOOK_DUNE=1, BOOK_NEUROMANCER=2),
    )

    # Dune fits in WH-EAST, the first of the pair; lines keep the order they were asked in.
    assert reservation.parcels == [
        parcel(EAST, BOOK_DUNE=1, BOOK_NEUROMANCER=2),
        parcel(WEST, BOOK_EARTHSEA=1),
    ]
    assert [line.sku for line in reservation.lines] == [
        "BOOK-EARTHSEA",
        "BOOK-DUNE",
        "BOOK-NEUROMANCER",
    ]
    assert holds(engine, "o-1") == [
        ("BOOK-DUNE", EAST, 1, "held"),
        ("BOOK-EARTHSEA", WEST, 1, "held"),
        ("BOOK-NEUROMANCER", EAST, 2, "held"),
    ]


def test_a_line_no_warehouse_holds_alone_is_split(engine: Engine) -> None:
    stock_product(engine, "FEW-COPIES", WH_EAST=3, WH_WEST=2)
    reservation = ActivityEnvironment().run(
        InventoryActivities(engine).reserve_stock, reserve_input("o-1", FEW_COPIES=4)
    )

    assert reservation.parcels == [parcel(EAST, FEW_COPIES=3), parcel(WEST, FEW_COPIES=1)]
    assert stock(engine, "FEW-COPIES", EAST) == (3, 3)
    assert stock(engine, "FEW-COPIES", WEST) == (2, 1)


def test_single_warehouse_refuses_an_order_that_would_be_split(engine: Engine) -> None:
    with pytest.raises(ApplicationError) as failed:
        ActivityEnvironment().run(
            InventoryActivities(engine).reserve_stock,
            reserve_input("o-1", single_warehouse=True, BOOK_NEUROMANCER=1, BOOK_EARTHSEA=1),
        )

    assert (failed.value.type, failed.value.non_retryable) == (OUT_OF_STOCK, True)
    assert "single warehouse" in failed.value.message
    assert holds(engine, "o-1") == []
    assert stock(engine, "BOOK-NEUROMANCER", EAST) == (500, 0)


def test_reserve_is_all_or_nothing(engine: Engine) -> None:
    with pytest.raises(ApplicationError) as failed:
        ActivityEnvironment().run(
            InventoryActivities(engine).reserve_stock,
            reserve_input("o-1", BOOK_DUNE=1, BOOK_SOLDOUT=1),
        )

    assert failed.value.type == OUT_OF_STOCK
    assert "BOOK-SOLDOUT" in failed.value.message
    assert "BOOK-DUNE" not in failed.value.message
    assert stock(engine, "BOOK-DUNE", EAST)[1] == 0  # the line that fitted was not held either
    assert holds(engine, "o-1") == []


def test_unknown_sku_is_a_business_failure(engine: Engine) -> None:
    with pytest.raises(ApplicationError) as failed:
        ActivityEnvironment().run(
            InventoryActivities(engine).reserve_stock, reserve_input("o-1", BOOK_NOPE=1)
        )
    assert (failed.value.type, failed.value.non_retryable) == (UNKNOWN_SKU, True)


def test_a_retried_reserve_holds_once_and_answers_the_same(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    request = reserve_input("o-1", BOOK_EARTHSEA=1, BOOK_NEUROMANCER=3, BOOK_DUNE=1)
    first = env.run(inventory.reserve_stock, request)
    # Even once other orders have taken WH-EAST's Dune, the retry answers what was held.
    with Session(engine) as session:
        dune = session.get(Stock, ("BOOK-DUNE", EAST))
        assert dune is not None
        dune.reserved = dune.on_hand
        session.add(dune)
        session.commit()
    again = env.run(inventory.reserve_stock, request)

    assert again == first
    assert stock(engine, "BOOK-NEUROMANCER", EAST) == (500, 3)
    assert holds(engine, "o-1") == [
        ("BOOK-DUNE", EAST, 1, "held"),
        ("BOOK-EARTHSEA", WEST, 1, "held"),
        ("BOOK-NEUROMANCER", EAST, 3, "held"),
    ]


# ---- settling and restocking -----------------------------------------------------------------


def test_release_gives_every_warehouses_stock_back_once(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    env.run(inventory.reserve_stock, reserve_input("o-1", BOOK_NEUROMANCER=2, BOOK_EARTHSEA=1))

    assert env.run(inventory.release_stock, OrderRef(order_id="o-1")) == 3
    assert env.run(inventory.release_stock, OrderRef(order_id="o-1")) == 0
    assert stock(engine, "BOOK-NEUROMANCER", EAST) == (500, 0)
    assert stock(engine, "BOOK-EARTHSEA", WEST) == (200, 0)
    assert holds(engine, "o-1") == [
        ("BOOK-EARTHSEA", WEST, 1, "released"),
        ("BOOK-NEUROMANCER", EAST, 2, "released"),
    ]


def test_commit_takes_one_warehouses_stock_off_hand_once(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    env.run(inventory.reserve_stock, reserve_input("o-1", BOOK_NEUROMANCER=2, BOOK_EARTHSEA=1))
    east = CommitStockInput(order_id="o-1", warehouse=EAST)

    assert env.run(inventory.commit_stock, east) == 2
    assert env.run(inventory.commit_stock, east) == 0
    assert stock(engine, "BOOK-NEUROMANCER", EAST) == (498, 0)
    assert stock(engine, "BOOK-EARTHSEA", WEST) == (200, 1)  # its parcel has not left yet
    # Shipped stock is gone for good: a release gives back only what has not left.
    assert env.run(inventory.release_stock, OrderRef(order_id="o-1")) == 1
    assert stock(engine, "BOOK-NEUROMANCER", EAST) == (498, 0)
    assert stock(engine, "BOOK-EARTHSEA", WEST) == (200, 0)
    assert holds(engine, "o-1") == [
        ("BOOK-EARTHSEA", WEST, 1, "released"),
        ("BOOK-NEUROMANCER", EAST, 2, "committed"),
    ]


def test_restock_puts_units_back_where_they_left_once_per_return(engine: Engine) -> None:
    inventory = InventoryActivities(engine)
    env = ActivityEnvironment()
    env.run(inventory.reserve_stock, reserve_input("o-1", BOOK_NEUROMANCER=2, BOOK_EARTHSEA=1))
    for warehouse in (EAST, WEST):
        env.run(inventory.commit_stock, CommitStockInput(order_id="o-1", warehouse=warehouse))
    returned = RestockInput(
        order_id="o-1",
        return_id="ret-1",
        parcels=[parcel(EAST, BOOK_NEUROMANCER=1), parcel(WEST, BOOK_EARTHSEA=1)],
    )

    assert env.run(inventory.restock, returned) == 2
    assert env.run(inventory.restock, returned) == 0
    assert stock(engine, "BOOK-NEUROMANCER", EAST) == (499, 0)
    assert stock(engine, "BOOK-EARTHSEA", WEST) == (200, 0)

    # A second return of the same order restocks on its own.
    second = RestockInput(
        order_id="o-1", return_id="ret-2", parcels=[parcel(EAST, BOOK_NEUROMANCER=1)]
    )
    assert env.run(inventory.restock, second) == 1
    assert stock(engine, "BOOK-NEUROMANCER", EAST) == (500, 0)
