"""The catalog, with what can still be ordered."""

from fastapi import APIRouter
from sqlmodel import col, select

from api.deps import SessionDep
from models.http import ProductView
from models.tables import Product

router = APIRouter(prefix="/products", tags=["catalog"])


@router.get("", response_model=list[ProductView], summary="List the catalog")
def list_products(session: SessionDep) -> list[ProductView]:
    """`available` is stock on hand less what running orders have reserved."""
    products = session.exec(select(Product).order_by(col(Product.sku))).all()
    return [
        ProductView(
            sku=product.sku,
            name=product.name,
            price=product.price,
            currency=product.currency,
            digital=product.digital,
            available=None
            if product.digital
            else max(product.stock_on_hand - product.stock_reserved, 0),
        )
        for product in products
    ]
