"""Stock: reserve at order time, commit when shipped, release when the order stops.

Every call is idempotent per order, so Temporal may retry any of them safely.
"""

from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity

from activities.errors import OUT_OF_STOCK, UNKNOWN_SKU, business_failure
from models.activities import OrderRef, Reservation, ReserveStockInput, RestockInput
from models.orders import OrderLine
from models.tables import Product, Restock, StockReservation


class InventoryActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name="reserve_stock")
    def reserve_stock(self, request: ReserveStockInput) -> Reservation:
        """Price every line from the catalog and hold its stock, all lines or none.

        Each hold is a conditional UPDATE (`available >= quantity`), so of two orders racing for
        the last unit exactly one wins, on SQLite and PostgreSQL alike.
        """
        quantities: dict[str, int] = {}
        for item in request.items:
            quantities[item.sku] = quantities.get(item.sku, 0) + item.quantity

        with Session(self._engine) as session:
            products = {
                p.sku: p
                for p in session.exec(select(Product).where(col(Product.sku).in_(quantities)))
            }
            for sku in quantities:
                if sku not in products:
                    raise business_failure(
                        UNKNOWN_SKU, "unknown_sku", f"{sku} is not in the catalog"
                    )
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

            already_held = session.exec(
                select(StockReservation).where(StockReservation.order_id == request.order_id)
            ).first()
            if already_held is not None:  # a retry after the hold committed
                return Reservation(order_id=request.order_id, lines=lines)

            for line in lines:
                if line.digital:
                    continue
                held = session.execute(
                    update(Product)
                    .where(
                        col(Product.sku) == line.sku,
                        col(Product.stock_on_hand) - col(Product.stock_reserved) >= line.quantity,
                    )
                    .values(stock_reserved=col(Product.stock_reserved) + line.quantity)
                )
                if held.rowcount != 1:  # type: ignore[attr-defined]
                    session.rollback()
                    raise business_failure(
                        OUT_OF_STOCK,
                        "out_of_stock",
                        f"not enough stock of {line.sku} for {line.quantity}",
                    )
                session.add(
                    StockReservation(
                        order_id=request.order_id, sku=line.sku, quantity=line.quantity
                    )
                )
            session.commit()
        return Reservation(order_id=request.order_id, lines=lines)

    @activity.defn(name="release_stock")
    def release_stock(self, request: OrderRef) -> int:
        """Give the order's held stock back; returns the units released (0 on a retry)."""
        return self._settle(request.order_id, to_status="released", ship=False)

    @activity.defn(name="commit_stock")
    def commit_stock(self, request: OrderRef) -> int:
        """The held stock left the warehouse: it is no longer on hand."""
        return self._settle(request.order_id, to_status="committed", ship=True)

    @activity.defn(name="restock")
    def restock(self, request: RestockInput) -> int:
        """Put a return's units back on hand, once per return; returns the units restocked."""
        with Session(self._engine) as session:
            units = 0
            for line in request.lines:
                session.add(
                    Restock(
                        order_id=request.order_id,
                        return_id=request.return_id,
                        sku=line.sku,
                        quantity=line.quantity,
                    )
                )
                session.execute(
                    update(Product)
                    .where(col(Product.sku) == line.sku)
                    .values(stock_on_hand=col(Product.stock_on_hand) + line.quantity)
                )
                units += line.quantity
            try:
                session.commit()
            except IntegrityError:  # this return was restocked by an earlier attempt
                session.rollback()
                return 0
        return units

    def _settle(self, order_id: str, *, to_status: str, ship: bool) -> int:
        units = 0
        with Session(self._engine) as session:
            # FOR UPDATE: a timed-out attempt still running beside its retry waits here, then
            # finds the holds settled (PostgreSQL re-checks the WHERE); SQLite's BEGIN IMMEDIATE
            # already serialises the two.
            holds = session.exec(
                select(StockReservation)
                .where(StockReservation.order_id == order_id, StockReservation.status == "held")
                .with_for_update()
            ).all()
            for hold in holds:
                values = {"stock_reserved": col(Product.stock_reserved) - hold.quantity}
                if ship:
                    values["stock_on_hand"] = col(Product.stock_on_hand) - hold.quantity
                session.execute(
                    update(Product).where(col(Product.sku) == hold.sku).values(**values)
                )
                hold.status = to_status
                session.add(hold)
                units += hold.quantity
            session.commit()
        return units
