"""The catalog, with what can still be ordered and where it is; operators' stock receipts."""

import hashlib
from datetime import timedelta
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Body, Path, Response
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import idempotency
from api.auth import OperatorOnly, PrincipalDep
from api.deps import EngineDep, SessionDep, SettingsDep, TemporalClientDep
from api.order_calls import temporal_unavailable
from api.order_updates import RequiredKey, key_reused
from api.problems import ApiProblem, auth_responses, problem_responses
from database import read_only
from models.activities import ReceiveStockInput, StockReceiptResult
from models.http import ProductView, StockArrival, StockReceiptView, WarehouseStockView
from models.tables import Product, Stock, Warehouse
from models.wire import STOCK_RECEIPT_WORKFLOW, TASK_QUEUE, stock_receipt_workflow_id

router = APIRouter(prefix="/products", tags=["catalog"])

SkuPath = Annotated[str, Path(pattern=r"^[A-Z0-9][A-Z0-9-]{0,63}$", examples=["BOOK-PREORDER"])]


def product_views(session: Session, sku: str | None = None) -> list[ProductView]:
    """`available` is stock on hand less what running orders have reserved, over all
    warehouses; `stock` breaks it down per warehouse, in the order orders are allocated."""
    query = select(Product).order_by(col(Product.sku))
    stock_query = (
        select(Stock)
        .join(Warehouse, col(Warehouse.code) == col(Stock.warehouse))
        .order_by(col(Warehouse.rank))
    )
    if sku is not None:
        query = query.where(Product.sku == sku)
        stock_query = stock_query.where(Stock.sku == sku)
    stock: dict[str, list[WarehouseStockView]] = {}
    for row in session.exec(stock_query):
        # Over-reserved stock shows as none free, never as a negative count.
        stock.setdefault(row.sku, []).append(
            WarehouseStockView(
                warehouse=row.warehouse,
                available=max(row.on_hand - row.reserved, 0),
                on_hand=row.on_hand,
            )
        )
    return [
        ProductView(
            sku=product.sku,
            name=product.name,
            price=product.price,
            currency=product.currency,
            digital=product.digital,
            backorderable=product.backorderable,
            available=None
            if product.digital
            else sum(s.available for s in stock.get(product.sku, [])),
            stock=[] if product.digital else stock.get(product.sku, []),
        )
        for product in session.exec(query)
    ]


@router.get("", response_model=list[ProductView], summary="List the catalog")
def list_products(session: SessionDep) -> list[ProductView]:
    return product_views(session)


def _check_arrival(engine: Engine, sku: str, warehouse: str) -> None:
    """What the operator can fix, answered before any workflow starts."""
    with Session(read_only(engine)) as session:
        product = session.get(Product, sku)
        if product is None:
            raise ApiProblem(404, "product-not-found", f"there is no product {sku}")
        if session.get(Warehouse, warehouse) is None:
            raise ApiProblem(404, "warehouse-not-found", f"there is no warehouse {warehouse}")
    if product.digital:
        raise ApiProblem(
            409, "digital-product", f"{sku} is digital: it is never stocked, nor short"
        )


def receipt_id(owner: str, key: str) -> str:
    """One receipt per owner and Idempotency-Key; opaque, so keys never show in workflow ids."""
    return "rcpt_" + hashlib.sha256(f"{owner}\n{key}".encode()).hexdigest()[:24]


@router.post(
    "/{sku}/stock",
    response_model=StockReceiptView,
    summary="Receive stock (operators)",
    dependencies=[OperatorOnly],
    responses={
        202: {"description": "Received; still serving waiting orders. Retry with the same key"},
        **auth_responses(operator=True),
        **problem_responses(400, 404, 409, 413, 422, 503),
    },
)
async def receive_stock(
    sku: SkuPath,
    arrival: Annotated[StockArrival, Body()],
    response: Response,
    client: TemporalClientDep,
    engine: EngineDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    idempotency_key: RequiredKey,
) -> StockReceiptView | Response:
    """Adds the units to the warehouse, then gives them to backordered orders strictly in the
    order they were placed, whole orders only: an older order that needs more than arrived
    keeps later orders for the same product waiting behind it. Each order served moves on to
    fulfilment. A retry with the same Idempotency-Key answers the same receipt, never adding
    the units twice."""
    await to_thread.run_sync(_check_arrival, engine, sku, arrival.warehouse)
    receipt = ReceiveStockInput(
        receipt_id=receipt_id(principal.name, idempotency_key),
        sku=sku,
        warehouse=arrival.warehouse,
        add=arrival.add,
        received_by=principal.name,
    )
    try:
        claim = await to_thread.run_sync(
            idempotency.claim,
            engine,
            principal.name,
            idempotency_key,
            idempotency.fingerprint(f"POST /products/{sku}/stock", arrival),
            receipt.receipt_id,
            settings.idempotency_key_ttl,
        )
    except idempotency.KeyReused as err:
        raise key_reused(err) from None
    if claim.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    try:
        handle = await _start(client, receipt)
        result = await _within(handle, settings.update_wait)
    except RPCError as err:
        raise temporal_unavailable(err) from None
    if result is None:
        return Response(status_code=202, headers={"Location": f"/products?sku={sku}"})
    with Session(read_only(engine)) as session:
        (product,) = product_views(session, sku)
    return StockReceiptView(
        receipt_id=result.receipt_id,
        warehouse=result.warehouse,
        added=result.added,
        filled_orders=[filled.order_id for filled in result.filled],
        product=product,
    )


async def _start(
    client: Client, receipt: ReceiveStockInput
) -> WorkflowHandle[object, StockReceiptResult]:
    workflow_id = stock_receipt_workflow_id(receipt.receipt_id)
    try:
        return await client.start_workflow(
            STOCK_RECEIPT_WORKFLOW,
            receipt,
            id=workflow_id,
            task_queue=TASK_QUEUE,
            result_type=StockReceiptResult,
            # A receipt that failed may be retried; one that completed is answered as it was.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            static_summary=f"Receive {receipt.add} x {receipt.sku} at {receipt.warehouse}",
        )
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(workflow_id, result_type=StockReceiptResult)


async def _within(
    handle: WorkflowHandle[object, StockReceiptResult], wait: timedelta
) -> StockReceiptResult | None:
    """The receipt's outcome, or None if it is still serving orders after `wait`."""
    try:
        return await handle.result(rpc_timeout=wait)
    except RPCError as err:
        if err.status is RPCStatusCode.DEADLINE_EXCEEDED:
            return None
        raise
    except WorkflowFailureError:
        raise ApiProblem(
            503,
            "stock-receipt-failed",
            "the receipt could not be recorded; retry with the same Idempotency-Key",
            headers={"Retry-After": "5"},
        ) from None
