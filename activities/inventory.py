"""Stock across the warehouses: reserve at order time (or queue the order for stock to come),
give a stock receipt's units to the queue, commit a warehouse's share when its parcel leaves,
release when the order stops, restock what comes back. The queue's rows: activities.backorders.

Every call is idempotent per order, so Temporal may retry any of them safely.
"""

from collections.abc import Iterable

from sqlalchemy import Engine, text, update
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import backorders
from activities.errors import OUT_OF_STOCK, UNKNOWN_SKU, business_failure
from models.activities import (
    CommitStockInput,
    FilledBackorder,
    OrderRef,
    ReceiveStockInput,
    Reservation,
    ReserveStockInput,
    RestockInput,
    StockAllocation,
    StockLevel,
    StockReceiptResult,
)
from models.orders import OrderLine
from models.shipments import ShipmentLine
from models.tables import (
    Product,
    Restock,
    Stock,
    StockReceipt,
    StockReservation,
    Warehouse,
)
from workflows.allocation import allocate, fill_backorders

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
        and hold them, all lines or none; or, when the short SKUs may all be backordered, put
        the whole order in the backorder queue, holding nothing until a receipt serves it.

        Each hold is a conditional UPDATE (`on_hand - reserved >= quantity`), so of two orders
        racing for the last unit exactly one wins, on SQLite and PostgreSQL alike; the loser
        re-reads and re-allocates, and may still win the same SKU in another warehouse.
        """
        quantities: dict[str, int] = {}
        for item in request.items:
            quantities[item.sku] = quantities.get(item.sku, 0) + item.quantity

        with Session(self._engine) as session:
            lines, backorderable = _priced_lines(session, quantities)
            wanted = {line.sku: line.quantity for line in lines if not line.digital}
            # Only an order that may wait meets the queue, and only for SKUs that may wait.
            queueable = backorderable & wanted.keys() if request.allow_backorder else set()
            for _ in range(ALLOCATION_ATTEMPTS):
                _one_attempt_per_order(session, request.order_id)
                if queueable:
                    backorders.lock_queue(session)
                earlier = _earlier_reservation(session, request.order_id, lines, queueable)
                if earlier is not None:  # a retry after an attempt committed
                    return earlier
                # Behind an order already waiting for one of its SKUs, it waits too, even with
                # the units on hand: taking them would serve it ahead of the older order.
                behind = queueable & backorders.skus_waited_for(session) if queueable else set()
                available = _free_stock(session, wanted)
                parcels = None
                if not behind:
                    parcels = allocate(
                        wanted,
                        available,
                        _warehouse_order(session),
                        single_warehouse=request.single_warehouse,
                    )
                if parcels is None:
                    short = behind | _short(wanted, available)
                    if not short or not short <= queueable:
                        raise _out_of_stock(wanted, available)
                    backorders.join(session, request.order_id, request.placed_at, wanted)
                    session.commit()
                    return Reservation(
                        order_id=request.order_id,
                        lines=lines,
                        backordered=[sku for sku in wanted if sku in short],
                    )
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

    @activity.defn(name="receive_stock")
    def receive_stock(self, request: ReceiveStockInput) -> StockReceiptResult:
        """Units arrived: put them on the shelf and hold them for the waiting orders they
        serve, oldest first and whole orders only, in one transaction. Once per receipt id:
        a retry adds nothing and answers what the receipt did."""
        with Session(self._engine) as session:
            # Before any stock row is touched: receipts and queued orders take turns, and each
            # then locks stock rows in (sku, warehouse) order, as every hold does.
            backorders.lock_queue(session)
            receipt = session.get(StockReceipt, request.receipt_id)
            if receipt is None:
                backorders.check_receivable(session, request)
                receipt = _receive(session, request)
                session.commit()
            return _receipt_result(session, receipt)

    @activity.defn(name="release_stock")
    def release_stock(self, request: OrderRef) -> int:
        """Give every warehouse's held stock of the order back and take it out of the
        backorder queue; returns the units released (0 on a retry)."""
        with Session(self._engine) as session:
            # Before the holds are read: a receipt filling the order first has committed its
            # holds (released below); one after finds the order gone from the queue.
            backorders.leave(session, request.order_id)
            units = _settle(session, request.order_id, None, to_status="released", ship=False)
            session.commit()
        return units

    @activity.defn(name="commit_stock")
    def commit_stock(self, request: CommitStockInput) -> int:
        """One warehouse's held stock left with its parcel: it is no longer on hand there."""
        with Session(self._engine) as session:
            units = _settle(
                session, request.order_id, request.warehouse, to_status="committed", ship=True
            )
            session.commit()
        return units

    @activity.defn(name="restock")
    def restock(self, request: RestockInput) -> int:
        """Put units back on hand in the warehouse each parcel left, once per order, return,
        SKU and warehouse; returns the units restocked (0 on a retry)."""
        units: dict[tuple[str, str], int] = {}
        for parcel in request.parcels:
            for line in parcel.lines:
                key = (line.sku, parcel.warehouse)
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
            # In (sku, warehouse) order, as holds and receipts lock stock rows: no deadlock.
            for (sku, warehouse), quantity in sorted(units.items()):
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


def _settle(
    session: Session, order_id: str, warehouse: str | None, *, to_status: str, ship: bool
) -> int:
    """Move the order's held rows (of one warehouse, or all) to `to_status`."""
    query = select(StockReservation).where(
        StockReservation.order_id == order_id, StockReservation.status == "held"
    )
    if warehouse is not None:
        query = query.where(StockReservation.warehouse == warehouse)
    # FOR UPDATE: a timed-out attempt still running beside its retry waits here, then finds
    # the holds settled (PostgreSQL re-checks the WHERE); SQLite's BEGIN IMMEDIATE already
    # serialises the two. Stock rows are then updated in (sku, warehouse) order, the order
    # reserve_stock locks them in, so the two never deadlock.
    holds = session.exec(
        query.order_by(col(StockReservation.sku), col(StockReservation.warehouse)).with_for_update()
    ).all()
    units = 0
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
    return units


def _priced_lines(session: Session, quantities: dict[str, int]) -> tuple[list[OrderLine], set[str]]:
    """The order's lines as the catalog prices them now, in the order they were asked for,
    and which of their SKUs orders may wait for."""
    products = {
        p.sku: p for p in session.exec(select(Product).where(col(Product.sku).in_(quantities)))
    }
    for sku in quantities:
        if sku not in products:
            raise business_failure(UNKNOWN_SKU, "unknown_sku", f"{sku} is not in the catalog")
    lines = [
        OrderLine(
            sku=sku,
            name=products[sku].name,
            quantity=quantity,
            unit_price=products[sku].price,
            digital=products[sku].digital,
        )
        for sku, quantity in quantities.items()
    ]
    return lines, {sku for sku, p in products.items() if p.backorderable and not p.digital}


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


def _warehouse_order(session: Session) -> list[str]:
    ranks = _ranks(session)
    return sorted(ranks, key=ranks.__getitem__)


def _earlier_reservation(
    session: Session, order_id: str, lines: list[OrderLine], queueable: set[str]
) -> Reservation | None:
    """What an earlier attempt of the order committed, answered again; None if none did."""
    held = _reservation_held(session, order_id, [line.sku for line in lines])
    if held is not None:  # its holds, or those a receipt made when it filled the backorder
        return Reservation(order_id=order_id, lines=lines, parcels=held)
    waits_for = backorders.waits_for(session, order_id, queueable)
    if waits_for is None:
        return None
    return Reservation(order_id=order_id, lines=lines, backordered=waits_for)


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


def _free_stock(session: Session, skus: Iterable[str]) -> dict[str, dict[str, int]]:
    """Units on hand and not held, per warehouse and SKU."""
    available: dict[str, dict[str, int]] = {}
    for stock in session.exec(select(Stock).where(col(Stock.sku).in_(list(skus)))):
        available.setdefault(stock.warehouse, {})[stock.sku] = stock.on_hand - stock.reserved
    return available


def _short(wanted: dict[str, int], available: dict[str, dict[str, int]]) -> set[str]:
    """The SKUs of which fewer units are free, over every warehouse, than are wanted."""
    free = {sku: sum(max(levels.get(sku, 0), 0) for levels in available.values()) for sku in wanted}
    return {sku for sku, units in wanted.items() if free[sku] < units}


def _out_of_stock(wanted: dict[str, int], available: dict[str, dict[str, int]]) -> ApplicationError:
    short = [
        f"{sku} for {units}" for sku, units in wanted.items() if sku in _short(wanted, available)
    ]
    if short:
        return business_failure(
            OUT_OF_STOCK, "out_of_stock", "not enough stock of " + ", ".join(short)
        )
    return business_failure(
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


# ---- stock receipts --------------------------------------------------------------------------


def _receive(session: Session, request: ReceiveStockInput) -> StockReceipt:
    """Shelve the units and serve the queue with them; the caller holds the queue lock."""
    queue = backorders.waiting(session)
    skus = {request.sku} | {sku for row in queue for sku in row.wanted}
    # Every stock row the receipt may hold from, locked before it is read: no ordinary order
    # takes units between the allocation and its holds, so those cannot lose a race.
    shelves = {
        (row.sku, row.warehouse): row
        for row in session.exec(
            select(Stock)
            .where(col(Stock.sku).in_(sorted(skus)))
            .order_by(col(Stock.sku), col(Stock.warehouse))
            .with_for_update()
        )
    }
    shelf = shelves.setdefault(
        (request.sku, request.warehouse), Stock(sku=request.sku, warehouse=request.warehouse)
    )
    shelf.on_hand += request.add
    session.add(shelf)
    session.flush()  # before the holds' conditional UPDATEs read it
    available: dict[str, dict[str, int]] = {}
    for row in shelves.values():
        available.setdefault(row.warehouse, {})[row.sku] = row.on_hand - row.reserved
    served = fill_backorders(
        [(row.order_id, row.wanted) for row in queue], available, _warehouse_order(session)
    )
    for order_id, parcels in served:
        _hold(session, order_id, parcels)
    filled = [order_id for order_id, _ in served]
    backorders.mark_filled(
        session, [row for row in queue if row.order_id in filled], request.receipt_id
    )
    return backorders.record_receipt(session, request, filled)


def _receipt_result(session: Session, receipt: StockReceipt) -> StockReceiptResult:
    """A receipt's outcome, rebuilt from what it recorded: the same answer on every retry
    (the stock levels as they stand now)."""
    filled = [
        FilledBackorder(
            order_id=row.order_id,
            parcels=_reservation_held(session, row.order_id, list(row.wanted)) or [],
        )
        for row in backorders.filled_by(session, receipt)
    ]
    ranks = _ranks(session)
    levels = sorted(
        session.exec(select(Stock).where(Stock.sku == receipt.sku)),
        key=lambda level: ranks[level.warehouse],
    )
    return StockReceiptResult(
        receipt_id=receipt.receipt_id,
        sku=receipt.sku,
        warehouse=receipt.warehouse,
        added=receipt.quantity,
        filled=filled,
        stock=[
            StockLevel(warehouse=level.warehouse, on_hand=level.on_hand, reserved=level.reserved)
            for level in levels
        ],
    )
