"""The allocation rule on its own: plain values in, parcels out; no server, no database."""

from itertools import combinations

from hypothesis import given
from hypothesis import strategies as st

from models.activities import StockAllocation
from models.shipments import ShipmentLine
from workflows.allocation import allocate

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
