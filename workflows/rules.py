"""An order's pure rules: what a parcel's capture is, what is returnable, how statuses follow.

Plain functions of models, no Temporal and no I/O, so each is unit-tested on its own and the
workflow only decides when to apply them.
"""

from collections.abc import Iterable

from models.activities import StockAllocation
from models.orders import (
    OrderItem,
    OrderLine,
    OrderStatus,
    ReturnLine,
    ReturnStatus,
    ReturnView,
    Totals,
    money,
)
from models.shipments import (
    CARRIER_FINAL,
    CARRIER_PROGRESS,
    CarrierEvent,
    CarrierStatus,
    ShipmentLine,
    ShipmentView,
)

# Units of one SKU, however they were asked for: ordered, returned or packed.
Units = OrderItem | ReturnLine | ShipmentLine


def merge_lines(lines: Iterable[Units]) -> list[ShipmentLine]:
    """One line per SKU, in the order the SKUs first appear."""
    merged: dict[str, int] = {}
    for line in lines:
        merged[line.sku] = merged.get(line.sku, 0) + line.quantity
    return [ShipmentLine(sku=sku, quantity=quantity) for sku, quantity in merged.items()]


def value_of(lines: Iterable[Units], priced: list[OrderLine]) -> int:
    """What these units cost the customer, at the prices the order was placed at."""
    prices = {line.sku: line.unit_price for line in priced}
    return sum(prices[line.sku] * line.quantity for line in lines)


def capture_amount(
    parcel: ShipmentView, priced: list[OrderLine], totals: Totals, *, first: bool
) -> int:
    """A parcel's share of the payment, taken when it is handed to the carrier.

    The first parcel handed over also carries the shipping fee and the digital lines (delivered
    with it), so the captures of all parcels add up to the order's total.
    """
    amount = value_of(parcel.lines, priced)
    if first:
        amount += totals.shipping + sum(line.line_total for line in priced if line.digital)
    return amount


def shipping_status(shipments: list[ShipmentView]) -> OrderStatus:
    """`shipped` once every parcel is with the carrier, `partially_shipped` before."""
    if all(s.shipped_at is not None for s in shipments):
        return OrderStatus.SHIPPED
    return OrderStatus.PARTIALLY_SHIPPED


def delivery_status(delivered: int, failed: int) -> OrderStatus:
    """The order's status once every parcel has reached a final carrier state."""
    if failed == 0:
        return OrderStatus.DELIVERED
    if delivered == 0:
        return OrderStatus.DELIVERY_FAILED
    return OrderStatus.PARTIALLY_DELIVERED


def merge_event(shipment: ShipmentView, event: CarrierEvent) -> None:
    """Add the event to the parcel's history; its status only ever moves forward."""
    shipment.events.append(event)
    shipment.events.sort(key=lambda e: e.occurred_at)
    current = CARRIER_PROGRESS[shipment.status] if shipment.status else 0
    if CARRIER_PROGRESS[event.status] > current:
        shipment.status = event.status


def is_final(shipment: ShipmentView) -> bool:
    return shipment.status in CARRIER_FINAL


def delivered_units(shipments: list[ShipmentView], priced: list[OrderLine]) -> dict[str, int]:
    """Units the customer received: delivered parcels' lines and every digital line."""
    units = {line.sku: line.quantity for line in priced if line.digital}
    for shipment in shipments:
        if shipment.status is CarrierStatus.DELIVERED:
            for line in shipment.lines:
                units[line.sku] = units.get(line.sku, 0) + line.quantity
    return units


def returned_units(returns: list[ReturnView]) -> dict[str, int]:
    """Units already asked back, except returns whose parcel never arrived."""
    units: dict[str, int] = {}
    for ret in returns:
        if ret.status is not ReturnStatus.NOT_RECEIVED:
            for line in ret.lines:
                units[line.sku] = units.get(line.sku, 0) + line.quantity
    return units


def returnable(
    sku: str, shipments: list[ShipmentView], priced: list[OrderLine], returns: list[ReturnView]
) -> int:
    return delivered_units(shipments, priced).get(sku, 0) - returned_units(returns).get(sku, 0)


def restock_parcels(
    lines: Iterable[Units], shipments: list[ShipmentView], earlier: list[ReturnView]
) -> list[StockAllocation]:
    """Which warehouse each returned unit goes back to: the one whose parcel brought it.

    Units are matched to delivered parcels in parcel order, after the units earlier returns
    already matched, so a warehouse never takes back more than it sent.
    """
    taken = returned_units(earlier)
    wanted = {line.sku: line.quantity for line in merge_lines(lines)}
    by_warehouse: dict[str, dict[str, int]] = {}
    for shipment in shipments:
        if shipment.status is not CarrierStatus.DELIVERED or shipment.warehouse is None:
            continue
        for line in shipment.lines:
            skip = min(taken.get(line.sku, 0), line.quantity)
            taken[line.sku] = taken.get(line.sku, 0) - skip
            units = min(line.quantity - skip, wanted.get(line.sku, 0))
            if units > 0:
                wanted[line.sku] -= units
                held = by_warehouse.setdefault(shipment.warehouse, {})
                held[line.sku] = held.get(line.sku, 0) + units
    return [
        StockAllocation(
            warehouse=warehouse,
            lines=[ShipmentLine(sku=sku, quantity=n) for sku, n in units.items()],
        )
        for warehouse, units in by_warehouse.items()
    ]


def return_status(
    returns: list[ReturnView], shipments: list[ShipmentView], priced: list[OrderLine]
) -> OrderStatus:
    """`returned` once every unit that arrived has been refunded by a return, else partially."""
    arrived = sum(delivered_units(shipments, priced).values())
    refunded = sum(
        line.quantity for r in returns if r.status is ReturnStatus.REFUNDED for line in r.lines
    )
    return OrderStatus.RETURNED if refunded >= arrived else OrderStatus.PARTIALLY_RETURNED


def refund_bound(left: int) -> str:
    return f"at most {money(left)} is left to refund"


def describe_lines(lines: Iterable[Units], most: int = 5) -> str:
    """`2x BOOK-DUNE, 1x BOOK-EARTHSEA`, shortened past `most` lines, for summaries."""
    lines = list(lines)
    text = ", ".join(f"{line.quantity}x {line.sku}" for line in lines[:most])
    return text + (" ..." if len(lines) > most else "")


def review_reasons(total: int, threshold: int, review_required: bool) -> list[str]:
    """Why an order waits for a person's risk review before anything is picked; none: it does
    not. The threshold travels in the order's input, so a change applies to new orders only."""
    reasons = []
    if total >= threshold:
        reasons.append(f"total {money(total)} is at least the review threshold {money(threshold)}")
    if review_required:
        reasons.append("the customer's orders are reviewed")
    return reasons
