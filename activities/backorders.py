"""The backorder queue's rows: orders waiting, oldest first, for stock a receipt brings, and
the ledger of receipts. Holding the stock itself is activities.inventory's.

Whoever reads the queue to decide takes `lock_queue` first: a new order deciding whether it
must wait, and a receipt deciding whom it serves, so neither decides on a queue the other
is changing.
"""

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import text
from sqlmodel import Session, col, select

from activities.errors import OUT_OF_STOCK, UNKNOWN_SKU, business_failure
from models.activities import ReceiveStockInput
from models.tables import Backorder, Product, StockReceipt, Warehouse, utcnow

WAITING, FILLED, LEFT = "waiting", "filled", "left"


def lock_queue(session: Session) -> None:
    """Take turns with every other reader of the queue until this transaction ends.

    PostgreSQL only: SQLite's BEGIN IMMEDIATE already serialises every writer (database.py).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended('backorder_queue', 0))")
        )


def skus_waited_for(session: Session) -> set[str]:
    """Every SKU some waiting order wants: a new order wanting one of them goes behind it."""
    rows = session.exec(select(Backorder).where(Backorder.status == WAITING))
    return {sku for row in rows for sku in row.wanted}


def join(
    session: Session, order_id: str, placed_at: datetime | None, wanted: dict[str, int]
) -> None:
    """Queue the order: `wanted` is its whole order's physical units, served together."""
    # In UTC: SQLite stores the moment without its offset, and the queue sorts on it.
    if placed_at is None:
        placed_at = utcnow()
    elif placed_at.tzinfo is None:
        placed_at = placed_at.replace(tzinfo=UTC)
    session.add(Backorder(order_id=order_id, placed_at=placed_at.astimezone(UTC), wanted=wanted))


def waits_for(session: Session, order_id: str, backorderable: set[str]) -> list[str] | None:
    """What a queued order waits for, answered again to a retry of its reservation; None if
    it never joined. Waiting, or left (its workflow has stopped): either way it holds nothing.

    Which SKUs were short when it joined is not recorded: every backorderable SKU it wants is
    one the queue serves it only together with.
    """
    row = session.get(Backorder, order_id)
    if row is None:
        return None
    return [sku for sku in row.wanted if sku in backorderable] or list(row.wanted)


def leave(session: Session, order_id: str) -> None:
    """Take a waiting order out of the queue; a filled one keeps its row (its holds are
    released as any order's are).

    FOR UPDATE: a receipt serving this order right now finishes first, and the caller's
    reads then see the holds it made; a later receipt finds the order gone.
    """
    row = session.exec(
        select(Backorder).where(Backorder.order_id == order_id).with_for_update()
    ).first()
    if row is not None and row.status == WAITING:
        row.status, row.updated_at = LEFT, utcnow()
        session.add(row)


def waiting(session: Session) -> list[Backorder]:
    """The queue, oldest first; locked, so an order leaving it waits for the receipt."""
    return list(
        session.exec(
            select(Backorder)
            .where(Backorder.status == WAITING)
            .order_by(col(Backorder.placed_at), col(Backorder.order_id))
            .with_for_update()
        )
    )


def mark_filled(session: Session, rows: Iterable[Backorder], receipt_id: str) -> None:
    now = utcnow()
    for row in rows:
        row.status, row.receipt_id, row.updated_at = FILLED, receipt_id, now
        session.add(row)


def record_receipt(session: Session, request: ReceiveStockInput, filled: list[str]) -> StockReceipt:
    """The ledger row: what arrived and whom it served, in service order."""
    receipt = StockReceipt(
        receipt_id=request.receipt_id,
        sku=request.sku,
        warehouse=request.warehouse,
        quantity=request.add,
        received_by=request.received_by,
        filled=filled,
    )
    session.add(receipt)
    return receipt


def filled_by(session: Session, receipt: StockReceipt) -> list[Backorder]:
    """The orders a recorded receipt served, in the order it served them."""
    rows = {
        row.order_id: row
        for row in session.exec(select(Backorder).where(Backorder.receipt_id == receipt.receipt_id))
    }
    return [rows[order_id] for order_id in receipt.filled]


def check_receivable(session: Session, request: ReceiveStockInput) -> None:
    """The API checks these before it starts the receipt; this is the activity's own defence."""
    product = session.get(Product, request.sku)
    if product is None:
        raise business_failure(UNKNOWN_SKU, "unknown_sku", f"{request.sku} is not in the catalog")
    if session.get(Warehouse, request.warehouse) is None:
        raise business_failure(
            UNKNOWN_SKU, "unknown_warehouse", f"there is no warehouse {request.warehouse}"
        )
    if product.digital:
        raise business_failure(
            OUT_OF_STOCK, "digital_product", f"{request.sku} is digital: it is never stocked"
        )
