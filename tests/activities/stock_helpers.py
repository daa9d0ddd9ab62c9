"""Helpers for the stock tests: the seeded warehouses, reservation inputs, stock and hold
readers, and a race of concurrent attempts.

The seeded stock (database.DEMO_STOCK): Dune in both warehouses, Neuromancer in WH-EAST only,
Earthsea in WH-WEST only, the last copy in WH-EAST, the sold-out atlas nowhere, the preorder
(backorderable) nowhere.
"""

from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError

from activities.errors import OUT_OF_STOCK
from models.activities import ReserveStockInput, StockAllocation
from models.orders import OrderItem
from models.shipments import ShipmentLine
from models.tables import Product, Stock, StockReservation

EAST, WEST = "WH-EAST", "WH-WEST"
PREORDER = "BOOK-PREORDER"  # seeded backorderable and stocked nowhere
OPENED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
T = TypeVar("T")


def reserve_input(order_id: str, single_warehouse: bool = False, **items: int) -> ReserveStockInput:
    return ReserveStockInput(
        order_id=order_id,
        items=[OrderItem(sku=sku.replace("_", "-"), quantity=qty) for sku, qty in items.items()],
        single_warehouse=single_warehouse,
    )


def parcel(warehouse: str, **lines: int) -> StockAllocation:
    return StockAllocation(
        warehouse=warehouse,
        lines=[ShipmentLine(sku=sku.replace("_", "-"), quantity=q) for sku, q in lines.items()],
    )


def stock(engine: Engine, sku: str, warehouse: str) -> tuple[int, int]:
    """(on hand, reserved)"""
    with Session(engine) as session:
        row = session.get(Stock, (sku, warehouse))
        assert row is not None
        return row.on_hand, row.reserved


def holds(engine: Engine, order_id: str) -> list[tuple[str, str, int, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(StockReservation).where(StockReservation.order_id == order_id)
        ).all()
        return sorted((row.sku, row.warehouse, row.quantity, row.status) for row in rows)


def stock_product(engine: Engine, sku: str, backorderable: bool = False, **on_hand: int) -> None:
    """A product of the test's own, with `on_hand` units per warehouse (WH_EAST=1, ...)."""
    with Session(engine) as session:
        session.add(Product(sku=sku, name=f"Test {sku}", price=100, backorderable=backorderable))
        session.flush()
        for warehouse, units in on_hand.items():
            where = warehouse.replace("_", "-")
            session.add(Stock(sku=sku, warehouse=where, on_hand=units, seeded=units))
        session.commit()


def assert_out_of_stock(outcomes: list[object], sku: str) -> None:
    for lost in outcomes:
        assert isinstance(lost, ApplicationError), lost
        assert lost.type == OUT_OF_STOCK
        assert lost.non_retryable
        assert lost.details == ("out_of_stock",)
        assert sku in lost.message
