"""Which warehouses an order's physical lines ship from: a pure rule, no database, no Temporal.

Every parcel costs a pick, a label and a carrier booking, so the fewest warehouses win. Only
models are imported, as in every workflow module.
"""

from collections.abc import Mapping, Sequence
from itertools import combinations

from models.activities import StockAllocation
from models.shipments import ShipmentLine


def allocate(
    wanted: Mapping[str, int],
    available: Mapping[str, Mapping[str, int]],
    warehouses: Sequence[str],
    *,
    single_warehouse: bool = False,
) -> list[StockAllocation] | None:
    """The parcels that cover `wanted` (units per SKU) from the fewest warehouses.

    `available[warehouse][sku]` is the units free there (missing means none); `warehouses` is
    the rank order, and only warehouses named there are used. Rank breaks every tie: of two
    equally small sets of warehouses, the one whose first differing warehouse ranks higher
    wins, and within the chosen set each line takes what it can from the higher-ranked
    warehouse first, so a line is split only when no one warehouse of the set holds it.
    Parcels come in rank order, their lines in `wanted`'s order.

    None when the stock cannot cover the order; with `single_warehouse`, when no one
    warehouse holds all of it.
    """
    wanted = {sku: units for sku, units in wanted.items() if units > 0}
    if not wanted:
        return []
    ranked = list(dict.fromkeys(warehouses))
    # Checked first so an order nothing can cover does not try every set of warehouses.
    if not _covers(wanted, available, ranked):
        return None
    largest = 1 if single_warehouse else len(ranked)
    for size in range(1, largest + 1):
        # combinations() yields the sets in rank order: the first that covers wins the tie.
        for chosen in combinations(ranked, size):
            if _covers(wanted, available, chosen):
                return _fill(wanted, available, chosen)
    return None


def _free(available: Mapping[str, Mapping[str, int]], warehouse: str, sku: str) -> int:
    # Over-reserved stock (on hand below reserved) reads as nothing free, never as a debt.
    return max(available.get(warehouse, {}).get(sku, 0), 0)


def _covers(
    wanted: Mapping[str, int],
    available: Mapping[str, Mapping[str, int]],
    chosen: Sequence[str],
) -> bool:
    # Lines never compete for the same units, so a set covers the order when it covers each line.
    return all(
        sum(_free(available, warehouse, sku) for warehouse in chosen) >= units
        for sku, units in wanted.items()
    )


def _fill(
    wanted: Mapping[str, int],
    available: Mapping[str, Mapping[str, int]],
    chosen: Sequence[str],
) -> list[StockAllocation]:
    remaining = dict(wanted)
    parcels = []
    for warehouse in chosen:
        lines = []
        for sku in wanted:
            taken = min(remaining[sku], _free(available, warehouse, sku))
            if taken > 0:
                lines.append(ShipmentLine(sku=sku, quantity=taken))
                remaining[sku] -= taken
        if lines:  # never at the smallest covering size; kept so no parcel is ever empty
            parcels.append(StockAllocation(warehouse=warehouse, lines=lines))
    return parcels


def fill_backorders(
    waiting: Sequence[tuple[str, Mapping[str, int]]],
    available: Mapping[str, Mapping[str, int]],
    warehouses: Sequence[str],
) -> list[tuple[str, list[StockAllocation]]]:
    """The waiting orders the stock serves now, whole, and the parcels each gets.

    `waiting` is the backorder queue, oldest first: (order id, units wanted per SKU). Orders
    are served strictly in that order: one that cannot be served whole keeps every SKU it
    wants for itself, so no later order takes a unit of those SKUs ahead of it. A later
    order wanting none of them is served from what is left.
    """
    free = {warehouse: dict(levels) for warehouse, levels in available.items()}
    blocked: set[str] = set()
    served: list[tuple[str, list[StockAllocation]]] = []
    for order_id, wanted in waiting:
        parcels = None if blocked & set(wanted) else allocate(wanted, free, warehouses)
        if parcels is None:
            blocked |= set(wanted)
            continue
        for parcel in parcels:
            for line in parcel.lines:
                free[parcel.warehouse][line.sku] -= line.quantity
        served.append((order_id, parcels))
    return served
