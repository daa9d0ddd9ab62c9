"""The allocation rules on their own: plain values in, parcels out; no server, no database."""

from itertools import combinations

from hypothesis import given
from hypothesis import strategies as st

from models.activities import StockAllocation
from models.shipments import ShipmentLine
from workflows.allocation import allocate, fill_backorders

RANKED = ["WH-EAST", "WH-WEST", "WH-NORTH"]


def parcels(*by_warehouse: tuple[str, dict[str, int]]) -> list[StockAllocation]:
    return [
        StockAllocation(
            warehouse=warehouse,
            lines=[ShipmentLine(sku=sku, quantity=units) for sku, units in lines.items()],
        )
        for warehouse, lines in by_warehouse
    ]


def test_one_warehouse_that_holds_everything_ships_it_all() -> None:
    available = {
        "WH-EAST": {"DUNE": 5},
        "WH-WEST": {"DUNE": 5, "NEUROMANCER": 5},
    }
    assert allocate({"DUNE": 2, "NEUROMANCER": 1}, available, RANKED) == parcels(
        ("WH-WEST", {"DUNE": 2, "NEUROMANCER": 1})
    )


def test_of_two_warehouses_that_each_hold_everything_the_higher_ranked_ships() -> None:
    available = {"WH-EAST": {"DUNE": 5}, "WH-WEST": {"DUNE": 5}}
    assert allocate({"DUNE": 2}, available, ["WH-EAST", "WH-WEST"]) == parcels(
        ("WH-EAST", {"DUNE": 2})
    )
    assert allocate({"DUNE": 2}, available, ["WH-WEST", "WH-EAST"]) == parcels(
        ("WH-WEST", {"DUNE": 2})
    )


def test_one_parcel_from_a_lower_ranked_warehouse_beats_two_from_higher_ranked_ones() -> None:
    available = {
        "WH-EAST": {"DUNE": 1},
        "WH-WEST": {"NEUROMANCER": 1},
        "WH-NORTH": {"DUNE": 1, "NEUROMANCER": 1},
    }
    assert allocate({"DUNE": 1, "NEUROMANCER": 1}, available, RANKED) == parcels(
        ("WH-NORTH", {"DUNE": 1, "NEUROMANCER": 1})
    )


def test_two_parcels_from_the_higher_ranked_pair_when_no_warehouse_holds_everything() -> None:
    # (EAST, WEST) and (WEST, NORTH) both cover the order: EAST outranks WEST, so the first.
    available = {
        "WH-EAST": {"DUNE": 1},
        "WH-WEST": {"NEUROMANCER": 1},
        "WH-NORTH": {"DUNE": 1},
    }
    assert allocate({"NEUROMANCER": 1, "DUNE": 1}, available, RANKED) == parcels(
        ("WH-EAST", {"DUNE": 1}),
        ("WH-WEST", {"NEUROMANCER": 1}),
    )


def test_a_line_no_warehouse_holds_is_split_higher_rank_first() -> None:
    available = {"WH-EAST": {"LASTCOPY": 1}, "WH-WEST": {"LASTCOPY": 1}}
    assert allocate({"LASTCOPY": 2}, available, RANKED) == parcels(
        ("WH-EAST", {"LASTCOPY": 1}),
        ("WH-WEST", {"LASTCOPY": 1}),
    )


def test_lines_keep_the_order_they_were_asked_in() -> None:
    available = {"WH-EAST": {"A": 1, "B": 1, "C": 1}}
    assert allocate({"C": 1, "A": 1, "B": 1}, available, RANKED) == parcels(
        ("WH-EAST", {"C": 1, "A": 1, "B": 1})
    )


def test_an_order_the_stock_cannot_cover_gets_none() -> None:
    available = {"WH-EAST": {"DUNE": 1}, "WH-WEST": {"DUNE": 1, "SOLDOUT": 0}}
    assert allocate({"DUNE": 3}, available, RANKED) is None
    assert allocate({"DUNE": 1, "SOLDOUT": 1}, available, RANKED) is None
    assert allocate({"NOWHERE": 1}, available, RANKED) is None


def test_over_reserved_stock_counts_as_none_free() -> None:
    available = {"WH-EAST": {"DUNE": -2}, "WH-WEST": {"DUNE": 2}}
    assert allocate({"DUNE": 2}, available, RANKED) == parcels(("WH-WEST", {"DUNE": 2}))


def test_single_warehouse_refuses_to_split() -> None:
    available = {"WH-EAST": {"DUNE": 1}, "WH-WEST": {"DUNE": 1, "NEUROMANCER": 1}}
    assert allocate({"DUNE": 2}, available, RANKED, single_warehouse=True) is None
    assert allocate({"DUNE": 1, "NEUROMANCER": 1}, available, RANKED, single_warehouse=True) == (
        parcels(("WH-WEST", {"DUNE": 1, "NEUROMANCER": 1}))
    )


def test_warehouses_outside_the_ranking_are_not_used() -> None:
    available = {"WH-EAST": {"DUNE": 1}, "WH-CLOSED": {"DUNE": 5}}
    assert allocate({"DUNE": 2}, available, ["WH-EAST"]) is None


def test_nothing_wanted_needs_no_parcel() -> None:
    assert allocate({}, {"WH-EAST": {"DUNE": 1}}, RANKED) == []
    assert allocate({"DUNE": 0}, {}, RANKED) == []


# ---- properties against brute force -----------------------------------------------------------

SKUS = ["A", "B", "C"]
stock_levels = st.dictionaries(
    st.sampled_from(RANKED),
    st.dictionaries(st.sampled_from(SKUS), st.integers(min_value=-1, max_value=4)),
)
orders = st.dictionaries(st.sampled_from(SKUS), st.integers(min_value=1, max_value=6), min_size=1)


def fewest_covering_warehouses(wanted: dict[str, int], available: dict[str, dict[str, int]]) -> int:
    """The size of the smallest set of warehouses holding the order, or 0 if none does."""
    for size in range(1, len(RANKED) + 1):
        for chosen in combinations(RANKED, size):
            free = {
                sku: sum(max(available.get(w, {}).get(sku, 0), 0) for w in chosen) for sku in wanted
            }
            if all(free[sku] >= units for sku, units in wanted.items()):
                return size
    return 0


@given(wanted=orders, available=stock_levels, single_warehouse=st.booleans())
def test_allocation_is_exact_within_stock_and_uses_the_fewest_parcels(
    wanted: dict[str, int], available: dict[str, dict[str, int]], single_warehouse: bool
) -> None:
    result = allocate(wanted, available, RANKED, single_warehouse=single_warehouse)
    fewest = fewest_covering_warehouses(wanted, available)

    if fewest == 0 or (single_warehouse and fewest > 1):
        assert result is None
        return
    assert result is not None
    assert len(result) == fewest
    assert [p.warehouse for p in result] == sorted({p.warehouse for p in result}, key=RANKED.index)
    shipped = dict.fromkeys(wanted, 0)
    for parcel in result:
        assert parcel.lines, "no empty parcel"
        skus = [line.sku for line in parcel.lines]
        assert skus == sorted(skus, key=list(wanted).index)
        for line in parcel.lines:
            assert 0 < line.quantity <= available[parcel.warehouse][line.sku]
            shipped[line.sku] += line.quantity
    assert shipped == wanted


@given(wanted=orders, available=stock_levels)
def test_only_rank_breaks_ties_not_the_order_stock_was_read_in(
    wanted: dict[str, int], available: dict[str, dict[str, int]]
) -> None:
    read_backwards = {
        w: dict(reversed(levels.items())) for w, levels in reversed(available.items())
    }
    assert allocate(wanted, read_backwards, RANKED) == allocate(wanted, available, RANKED)


# ---- the backorder queue ----------------------------------------------------------------------

EAST_WEST = ["WH-EAST", "WH-WEST"]


def test_an_older_order_that_cannot_be_served_keeps_a_younger_one_from_its_units() -> None:
    queue = [("o-1", {"PRE": 2}), ("o-2", {"PRE": 1}), ("o-3", {"PRE": 1})]
    assert fill_backorders(queue, {"WH-EAST": {"PRE": 1}}, EAST_WEST) == []
    assert fill_backorders(queue, {"WH-EAST": {"PRE": 2}}, EAST_WEST) == [
        ("o-1", parcels(("WH-EAST", {"PRE": 2})))
    ]
    # Three units: the oldest two, in queue order; the third waits.
    assert [order for order, _ in fill_backorders(queue, {"WH-EAST": {"PRE": 3}}, EAST_WEST)] == [
        "o-1",
        "o-2",
    ]


def test_orders_are_served_whole_or_not_at_all() -> None:
    queue = [("o-1", {"PRE": 1, "DUNE": 2})]
    assert fill_backorders(queue, {"WH-EAST": {"PRE": 5, "DUNE": 1}}, EAST_WEST) == []
    assert fill_backorders(queue, {"WH-EAST": {"PRE": 5}, "WH-WEST": {"DUNE": 2}}, EAST_WEST) == [
        ("o-1", parcels(("WH-EAST", {"PRE": 1}), ("WH-WEST", {"DUNE": 2})))
    ]


def test_an_unserved_order_blocks_every_sku_it_wants_and_only_those() -> None:
    queue = [
        ("o-1", {"PRE": 1, "RARE": 9}),  # RARE is short: o-1 keeps PRE and RARE
        ("o-2", {"PRE": 1}),  # PRE is on hand, but owed to o-1
        ("o-3", {"DUNE": 1}),  # wants neither: served
        ("o-4", {"DUNE": 1, "PRE": 1}),  # wants PRE: waits, and so keeps DUNE too
        ("o-5", {"DUNE": 1}),  # behind o-4 for DUNE
        ("o-6", {"EARTHSEA": 1}),
    ]
    available = {"WH-EAST": {"PRE": 5, "RARE": 1, "DUNE": 5, "EARTHSEA": 1}}
    assert fill_backorders(queue, available, EAST_WEST) == [
        ("o-3", parcels(("WH-EAST", {"DUNE": 1}))),
        ("o-6", parcels(("WH-EAST", {"EARTHSEA": 1}))),
    ]


def test_units_given_to_an_older_order_are_not_given_again() -> None:
    # o-1 takes WH-EAST's two (one parcel beats two); o-2 gets WH-WEST's one; o-3 none left.
    queue = [("o-1", {"PRE": 2}), ("o-2", {"PRE": 1}), ("o-3", {"PRE": 1})]
    available = {"WH-EAST": {"PRE": 2}, "WH-WEST": {"PRE": 1}}
    assert fill_backorders(queue, available, EAST_WEST) == [
        ("o-1", parcels(("WH-EAST", {"PRE": 2}))),
        ("o-2", parcels(("WH-WEST", {"PRE": 1}))),
    ]
    assert available == {"WH-EAST": {"PRE": 2}, "WH-WEST": {"PRE": 1}}  # the input is untouched


def test_an_empty_queue_serves_no_one() -> None:
    assert fill_backorders([], {"WH-EAST": {"PRE": 5}}, EAST_WEST) == []


queues = st.lists(orders, max_size=5).map(
    lambda wants: [(f"o-{n}", w) for n, w in enumerate(wants)]
)


@given(queue=queues, available=stock_levels)
def test_the_queue_is_served_whole_within_stock_and_never_out_of_turn(
    queue: list[tuple[str, dict[str, int]]], available: dict[str, dict[str, int]]
) -> None:
    served = dict(fill_backorders(queue, available, RANKED))
    assert list(served) == [order for order, _ in queue if order in served]  # queue order
    taken: dict[tuple[str, str], int] = {}
    for order, wanted in queue:
        if order not in served:
            continue
        shipped = dict.fromkeys(wanted, 0)
        for parcel in served[order]:
            for line in parcel.lines:
                shipped[line.sku] += line.quantity
                key = (parcel.warehouse, line.sku)
                taken[key] = taken.get(key, 0) + line.quantity
        assert shipped == wanted  # whole
    for (warehouse, sku), units in taken.items():
        assert units <= available[warehouse][sku]
    # No order is served after an older unserved one that wants one of its SKUs.
    for n, (order, wanted) in enumerate(queue):
        if order in served:
            assert not any(o not in served and set(w) & set(wanted) for o, w in queue[:n])
