"""Stock across the warehouses: reserve at order time, commit a warehouse's share when its
parcel leaves, release when the order stops, restock what comes back.

Every call is idempotent per order, so Temporal may retry any of them safely.
"""

from sqlalchemy import Engine, text, update
from sqlmodel import Session, col, select
from temporalio import activity

from activities.errors import OUT_OF_STOCK, UNKNOWN_SKU, business_failure
from models.activities import (
    CommitStockInput,
    OrderRef,
    Reservation,
    ReserveStockInput,
    RestockInput,
    StockAllocation,
)
from models.orders import OrderLine
from models.shipments import ShipmentLine
from models.tables import Product, Restock, Stock, StockReservation, Warehouse
from workflows.allocation import allocate

# How many times a reservation re-reads the stock after a racing order took units it had
# allocated. Each lost race means another order committed a hold, so a few suffice; this is
# not a RetryPolicy's job because running out is an answer (OutOfStock), not an outage.
ALLOCATION_ATTEMPTS = 5


class _LostRace(Exception):
    """A conditional hold found the units it allocated already taken."""


class InventoryActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name="reserve_stock")
    def reserve_stock(self, request: ReserveStockInput) -> Reservation:
        """Price every line from the catalog, allocate the physical ones over the warehouses
        and hold them, all lines or none.

        Each hold is a conditional UPDATE (`on_hand - reserved >= quantity`), so of two orders
        racing for the last unit exactly one wins, on SQLite and PostgreSQL alike; the loser
        re-reads and re-allocates, and may still win the same SKU in another warehouse.
        """
        quantities: dict[str, int] = {}
        for item in request.items:
            quantities[item.sku] = quantities.get(item.sku, 0) + item.quantity

        with Session(self._engine) as session:
            lines = _priced_lines(session, quantities)
            wanted = {line.sku: line.quantity for line in lines if not line.digital}
            for _ in range(ALLOCATION_ATTEMPTS):
                _one_attempt_per_order(session, request.order_id)
                held = _reservation_held(session, request.order_id, list(quantities))
                if held is not None:  # a retry after the hold committed
                    return Reservation(order_id=request.order_id, lines=lines, parcels=held)
                parcels = _allocation(session, wanted, single=request.single_warehouse)
                try:
                    _hold(session, request.order_id, parcels)
                except _LostRace:
                    session.rollback()  # and re-read: the stock may be free elsewhere
                    continue
                session.commit()
                return Reservation(order_id=request.order_id, lines=lines, parcels=parcels)
        raise business_failure(
            OUT_OF_STOCK,
            "out_of_stock",
            f"racing orders kept taking the stock of {', '.join(wanted)} "
            f"({ALLOCATION_ATTEMPTS} attempts)",
        )

    @activity.defn(name="release_stock")
    def release_stock(self, request: OrderRef) -> int:
        """Give every warehouse's held stock of the order back; returns the units released
        (0 on a retry)."""
        return self._settle(request.order_id, None, to_status="released", ship=False)

    @activity.defn(name="commit_stock")
    def commit_stock(self, request: CommitStockInput) -> int:
        """One warehouse's held stock left with its parcel: it is no longer on hand there."""
        return self._settle(request.order_id, request.warehouse, to_status="committed", ship=True)

    @activity.defn(name="restock")
    def restock(self, request: RestockInput) -> int:
        """Put units back on hand in the warehouse each parcel left, once per order, return,
        SKU and warehouse; returns the units restocked (0 on a retry)."""
        units: dict[tuple[str, str], int] = {}
        for parcel in request.parcels:
            for line in parcel.lines:
                key = (parcel.warehouse, line.sku)
                units[key] = units.get(key, 0) + line.quantity

        with Session(self._engine) as session:
            done = {
                (row.warehouse, row.sku)
                for row in session.exec(
                    select(Restock).where(
                        Restock.order_id == request.order_id,
                        Restock.return_id == request.return_id,
                    )
                )
            }
            restocked = 0
            for (warehouse, sku), quantity in units.items():
                if (warehouse, sku) in done or quantity <= 0:
                    continue
                # An attempt racing its own retry makes the second insert fail the unique
                # constraint at commit; that attempt is retried and finds these rows done.
                session.add(
                    Restock(
                        order_id=request.order_id,
                        return_id=request.return_id,
                        sku=sku,
                        warehouse=warehouse,
                        quantity=quantity,
                    )
                )
                shelved = session.execute(
                    update(Stock)
                    .where(col(Stock.sku) == sku, col(Stock.warehouse) == warehouse)
                    .values(on_hand=col(Stock.on_hand) + quantity)
                )
                if shelved.rowcount == 0:  # type: ignore[attr-defined]
                    # The warehouse's row for the SKU was removed since it shipped.
                    session.add(Stock(sku=sku, warehouse=warehouse, on_hand=quantity))
                restocked += quantity
            session.commit()
        return restocked

    def _settle(self, order_id: str, warehouse: str | None, *, to_status: str, ship: bool) -> int:
        """Move the order's held rows (of one warehouse, or all) to `to_status`."""
        query = select(StockReservation).where(
            StockReservation.order_id == order_id, StockReservation.status == "held"
        )
        if warehouse is not None:
            query = query.where(StockReservation.warehouse == warehouse)
        units = 0
        with Session(self._engine) as session:
            # FOR UPDATE: a timed-out attempt still running beside its retry waits here, then
            # finds the holds settled (PostgreSQL re-checks the WHERE); SQLite's BEGIN IMMEDIATE
            # already serialises the two. Stock rows are then updated in (sku, warehouse)
            # order, the order reserve_stock locks them in, so the two never deadlock.
            holds = session.exec(
                query.order_by(
                    col(StockReservation.sku), col(StockReservation.warehouse)
                ).with_for_update()
            ).all()
            for hold in holds:
                values = {"reserved": col(Stock.reserved) - hold.quantity}
                if ship:
                    values["on_hand"] = col(Stock.on_hand) - hold.quantity
                session.execute(
                    update(Stock)
                    .where(col(Stock.sku) == hold.sku, col(Stock.warehouse) == hold.warehouse)
                    .values(**values)
                )
                hold.status = to_status
                session.add(hold)
                units += hold.quantity
            session.commit()
        return units


def _priced_lines(session: Session, quantities: dict[str, int]) -> list[OrderLine]:
    """The order's lines as the catalog prices them now, in the order they were asked for."""
    products = {
        p.sku: p for p in session.exec(select(Product).where(col(Product.sku).in_(quantities)))
    }
    for sku in quantities:
        if sku not in products:
            raise business_failure(UNKNOWN_SKU, "unknown_sku", f"{sku} is not in the catalog")
    return [
        OrderLine(
            sku=sku,
            name=products[sku].name,
            quantity=quantity,
            unit_price=products[sku].price,
            digital=products[sku].digital,
        )
        for sku, quantity in quantities.items()
    ]


def _one_attempt_per_order(session: Session, order_id: str) -> None:
    """Serialise attempts of one order until this transaction ends.

    Without it, on PostgreSQL a timed-out attempt and its retry could both find no hold and,
    reading stock a moment apart, hold different warehouses: the unique constraint catches
    only identical holds. SQLite's BEGIN IMMEDIATE already serialises every writer.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"reserve_stock:{order_id}"},
        )


def _ranks(session: Session) -> dict[str, int]:
    return {w.code: w.rank for w in session.exec(select(Warehouse))}


def _reservation_held(
    session: Session, order_id: str, skus: list[str]
) -> list[StockAllocation] | None:
    """The parcels an earlier attempt held, rebuilt as it returned them; None if none did."""
    rows = session.exec(select(StockReservation).where(StockReservation.order_id == order_id)).all()
    if not rows:
        return None
    ranks = _ranks(session)
    by_warehouse: dict[str, dict[str, int]] = {}
    for row in rows:
        by_warehouse.setdefault(row.warehouse, {})[row.sku] = row.quantity
    return [
        StockAllocation(
            warehouse=warehouse,
            lines=[ShipmentLine(sku=sku, quantity=held[sku]) for sku in skus if sku in held],
        )
        for warehouse, held in sorted(by_warehouse.items(), key=lambda item: ranks[item[0]])
    ]


def _allocation(session: Session, wanted: dict[str, int], *, single: bool) -> list[StockAllocation]:
    """Where `wanted` would ship from as the stock stands now; OutOfStock if nowhere."""
    if not wanted:
        return []
    ranks = _ranks(session)
    available: dict[str, dict[str, int]] = {}
    for stock in session.exec(select(Stock).where(col(Stock.sku).in_(wanted))):
        available.setdefault(stock.warehouse, {})[stock.sku] = stock.on_hand - stock.reserved
    parcels = allocate(
        wanted, available, sorted(ranks, key=ranks.__getitem__), single_warehouse=single
    )
    if parcels is not None:
        return parcels
    free = {sku: sum(max(levels.get(sku, 0), 0) for levels in available.values()) for sku in wanted}
    short = [f"{sku} for {units}" for sku, units in wanted.items() if free[sku] < units]
    if short:
        raise business_failure(
            OUT_OF_STOCK, "out_of_stock", "not enough stock of " + ", ".join(short)
        )
    raise business_failure(
        OUT_OF_STOCK,
        "out_of_stock",
        "no single warehouse holds all of "
        + ", ".join(f"{units}x {sku}" for sku, units in wanted.items()),
    )


def _hold(session: Session, order_id: str, parcels: list[StockAllocation]) -> None:
    """Hold each parcel's units, or raise _LostRace when a racing order got there first."""
    # In (sku, warehouse) order, the same for every order, so two holds never deadlock.
    holds = sorted(
        (line.sku, parcel.warehouse, line.quantity) for parcel in parcels for line in parcel.lines
    )
    for sku, warehouse, quantity in holds:
        held = session.execute(
            update(Stock)
            .where(
                col(Stock.sku) == sku,
                col(Stock.warehouse) == warehouse,
                col(Stock.on_hand) - col(Stock.reserved) >= quantity,
            )
            .values(reserved=col(Stock.reserved) + quantity)
        )
        if held.rowcount != 1:  # type: ignore[attr-defined]
            raise _LostRace
        session.add(
            StockReservation(order_id=order_id, sku=sku, warehouse=warehouse, quantity=quantity)
        )
