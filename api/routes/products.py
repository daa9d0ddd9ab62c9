"""The catalog, with what can still be ordered and where it is."""

from fastapi import APIRouter
from sqlmodel import col, select

from api.deps import SessionDep
from models.http import ProductView, WarehouseStockView
from models.tables import Product, Stock, Warehouse

router = APIRouter(prefix="/products", tags=["catalog"])


@router.get("", response_model=list[ProductView], summary="List the catalog")
def list_products(session: SessionDep) -> list[ProductView]:
    """`available` is stock on hand less what running orders have reserved, over all
    warehouses; `stock` breaks it down per warehouse, in the order orders are allocated."""
    products = session.exec(select(Product).order_by(col(Product.sku))).all()
    stock: dict[str, list[WarehouseStockView]] = {}
    rows = session.exec(
        select(Stock)
        .join(Warehouse, col(Warehouse.code) == col(Stock.warehouse))
        .order_by(col(Warehouse.rank))
    )
    for row in rows:
        # Over-reserved stock shows as none free, never as a negative count.
        free = max(row.on_hand - row.reserved, 0)
        stock.setdefault(row.sku, []).append(
            WarehouseStockView(warehouse=row.warehouse, available=free)
        )
    return [
        ProductView(
            sku=product.sku,
            name=product.name,
            price=product.price,
            currency=product.currency,
            digital=product.digital,
            available=None
            if product.digital
            else sum(s.available for s in stock.get(product.sku, [])),
            stock=[] if product.digital else stock.get(product.sku, []),
        )
        for product in products
    ]
