"""Orders: place (start the workflow), read (query it, or the read model once closed), list
(read model), cancel (the workflow's `cancel` Update).

No handler ever awaits an order's result: an order lives for days.
"""

import asyncio
import base64
import binascii
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Body, Header, Path, Query, Response
from sqlalchemy import Engine, and_, or_
from sqlmodel import Session, col, select
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.common import QueryRejectCondition
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import idempotency
from api.auth import PrincipalDep, owns
from api.deps import EngineDep, SessionDep, SettingsDep, TemporalClientDep
from api.problems import ApiProblem, invalid, not_found, problem_responses
from models.http import (
    CANCEL_EXAMPLES,
    PLACE_ORDER_EXAMPLES,
    FieldError,
    OrderPage,
    OrderSummary,
    PlaceOrderRequest,
)
from models.orders import (
    CancelRequest,
    OrderStatus,
    OrderTimeouts,
    OrderView,
    PlaceOrderInput,
    received_view,
)
from models.tables import Customer, OrderRecord, Product
from models.wire import QUERY_STATUS, UPDATE_CANCEL, order_workflow_id
from temporal_client import start_order

log = logging.getLogger("ordermill.api.orders")

router = APIRouter(prefix="/orders", tags=["orders"])

# How long a request waits on Temporal before answering from what it has.
QUERY_TIMEOUT = timedelta(seconds=2)  # the read model answers when no worker does
CANCEL_WAIT = timedelta(seconds=20)
CANCEL_REFUSED = "CancelRefused"

OrderId = Annotated[
    str,
    Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$", examples=["ord_3f2a9c1d7e4b"]),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=idempotency.KEY_HEADER,
        pattern=idempotency.KEY_PATTERN,
        description="Any unique string (a UUID is best). Retrying with the same key and body "
        "returns the same order instead of placing a second one; keys are kept for 24 h.",
    ),
]


def new_order_id() -> str:
    return f"ord_{uuid.uuid4().hex[:24]}"


def temporal_unavailable(err: Exception) -> ApiProblem:
    log.warning("Temporal call failed: %s", err)
    return ApiProblem(
        503,
        "temporal-unavailable",
        "Orders cannot be reached right now; please retry shortly.",
        headers={"Retry-After": "5"},
    )


# ---- reading an order ------------------------------------------------------------------------


def _read_model_view(engine: Engine, order_id: str) -> OrderView | None:
    with Session(engine) as session:
        row = session.get(OrderRecord, order_id)
        return OrderView.model_validate_json(row.view_json) if row is not None else None


async def load_order(client: Client, engine: Engine, order_id: str) -> OrderView:
    """The running workflow's own view; the read model once it has closed (or can't answer)."""
    handle = client.get_workflow_handle(order_workflow_id(order_id))
    failure: RPCError | None = None
    try:
        view: OrderView = await handle.query(
            QUERY_STATUS,
            result_type=OrderView,
            reject_condition=QueryRejectCondition.NOT_OPEN,
            rpc_timeout=QUERY_TIMEOUT,
        )
        return view
    except WorkflowQueryRejectedError:
        pass  # closed: its last snapshot in the read model is final
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            # Temporal is unreachable or slow: the read model trails the order by moments only.
            log.warning("status query for %s failed (%s); trying the read model", order_id, err)
            failure = err
    stored = await to_thread.run_sync(_read_model_view, engine, order_id)
    if stored is not None:
        return stored
    if failure is not None:
        raise temporal_unavailable(failure)
    raise not_found("order", f"there is no order {order_id}")


# ---- placing an order ------------------------------------------------------------------------


def _unknown_references(engine: Engine, request: PlaceOrderRequest) -> list[FieldError]:
    """Catalog and customer checks the client can fix, answered before any workflow starts."""
    skus = {item.sku for item in request.items}
    with Session(engine) as session:
        known = set(session.exec(select(Product.sku).where(col(Product.sku).in_(skus))))
        customer = session.get(Customer, request.customer_id)
    errors = [
        FieldError(field=f"items[{i}].sku", reason=f"{item.sku} is not in the catalog")
        for i, item in enumerate(request.items)
        if item.sku not in known
    ]
    if customer is None:
        errors.insert(0, FieldError(field="customer_id", reason="there is no such customer"))
    return errors


@router.post(
    "",
    status_code=202,
    response_model=OrderView,
    summary="Place an order",
    responses={
        202: {"description": "Accepted: the order is being processed; follow `Location`"},
        **problem_responses(409, 422, 503),
    },
)
async def place_order(
    request: Annotated[PlaceOrderRequest, Body(openapi_examples=PLACE_ORDER_EXAMPLES)],
    response: Response,
    client: TemporalClientDep,
    engine: EngineDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> OrderView:
    """Starts the order's workflow and answers at once with the order as it stands (usually
    `received`). Payment, stock and shipping happen afterwards; poll `GET /orders/{id}`."""
    errors = await to_thread.run_sync(_unknown_references, engine, request)
    if errors:
        raise invalid(errors)

    order_id, replayed = new_order_id(), False
    if idempotency_key is not None:
        try:
            claim = await to_thread.run_sync(
                idempotency.claim,
                engine,
                idempotency_key,
                idempotency.fingerprint(request, principal.name),
                order_id,
            )
        except idempotency.KeyReused as err:
            # Name the order only to whoever may see it.
            which = (
                f"order {err.order_id}"
                if await owns(principal, client, engine, err.order_id)
                else "another order"
            )
            raise ApiProblem(
                409,
                "idempotency-key-reused",
                f"this {idempotency.KEY_HEADER} was already used for {which} "
                "with a different request; use a new key for a new order",
                title="Idempotency key reused",
            ) from None
        order_id, replayed = claim.order_id, claim.replayed

    order = PlaceOrderInput(
        order_id=order_id,
        customer_id=request.customer_id,
        items=request.items,
        shipping_address=request.shipping_address,
        delivery=request.delivery,
        payment=request.payment,
        placed_at=datetime.now(UTC),
        timeouts=OrderTimeouts(
            delivery_timeout=settings.delivery_timeout,
            return_window=settings.return_window,
            return_arrival_timeout=settings.return_arrival_timeout,
        ),
        placed_by=principal.name,
    )
    response.headers["Location"] = f"/orders/{order_id}"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    try:
        await start_order(client, order)
    except WorkflowAlreadyStartedError:
        # A replayed key whose order has already finished: answer with that order.
        return await load_order(client, engine, order_id)
    except RPCError as err:
        raise temporal_unavailable(err) from None
    if not replayed:
        # A new order id, so this request started the workflow: the order is `received`.
        # Querying it would wait for its worker's first task, most of the request's time.
        return received_view(order)
    try:
        return await load_order(client, engine, order_id)
    except ApiProblem:  # started, but neither its worker nor the read model has it yet
        return received_view(order)


# ---- reading and listing ---------------------------------------------------------------------


@router.get(
    "/{order_id}",
    response_model=OrderView,
    summary="Get an order",
    responses=problem_responses(404, 422),
)
async def get_order(order_id: OrderId, client: TemporalClientDep, engine: EngineDep) -> OrderView:
    return await load_order(client, engine, order_id)


def encode_cursor(placed_at: datetime, order_id: str) -> str:
    raw = json.dumps([_utc(placed_at).isoformat(), order_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        placed_at, order_id = json.loads(raw)
        if not isinstance(placed_at, str) or not isinstance(order_id, str):
            raise ValueError
        return _utc(datetime.fromisoformat(placed_at)), order_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise invalid(
            [FieldError(field="cursor", reason="is not a cursor this API gave out")]
        ) from None


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get(
    "",
    response_model=OrderPage,
    summary="List orders, newest first",
    responses=problem_responses(422),
)
def list_orders(
    session: SessionDep,
    principal: PrincipalDep,
    customer_id: Annotated[str | None, Query(max_length=64)] = None,
    status: OrderStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> OrderPage:
    """From the read model, which follows each order within moments. Pages are keyset-based:
    orders placed while you page never make you skip or repeat one. A client key lists only
    the orders it placed."""
    query = select(OrderRecord)
    if not principal.is_operator:
        query = query.where(OrderRecord.placed_by == principal.name)
    if customer_id is not None:
        query = query.where(OrderRecord.customer_id == customer_id)
    if status is not None:
        query = query.where(OrderRecord.status == status.value)
    if cursor is not None:
        placed_at, order_id = decode_cursor(cursor)
        query = query.where(
            or_(
                col(OrderRecord.placed_at) < placed_at,
                and_(col(OrderRecord.placed_at) == placed_at, col(OrderRecord.order_id) < order_id),
            )
        )
    query = query.order_by(col(OrderRecord.placed_at).desc(), col(OrderRecord.order_id).desc())
    rows = session.exec(query.limit(limit + 1)).all()
    page = rows[:limit]
    items = [
        OrderSummary(
            order_id=row.order_id,
            customer_id=row.customer_id,
            status=OrderStatus(row.status),
            reason_code=row.reason_code,
            currency=row.currency,
            total=row.total,
            tracking_number=row.tracking_number,
            placed_at=_utc(row.placed_at),
            updated_at=_utc(row.updated_at),
        )
        for row in page
    ]
    next_cursor = (
        encode_cursor(page[-1].placed_at, page[-1].order_id) if len(rows) > limit else None
    )
    return OrderPage(items=items, next_cursor=next_cursor)


# ---- cancelling ------------------------------------------------------------------------------


def _refused(detail: str) -> ApiProblem:
    return ApiProblem(409, "cancel-refused", detail, title="The order can no longer be cancelled")


def _update_failure(err: WorkflowUpdateFailedError) -> Exception:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == CANCEL_REFUSED:
        return _refused(cause.message)
    return err  # not a refusal we know: the catch-all logs it


@router.post(
    "/{order_id}/cancel",
    response_model=OrderView,
    summary="Cancel an order",
    responses={
        200: {"description": "Cancelled: stock released, card authorization voided"},
        202: {"description": "Cancellation accepted and still in progress"},
        **problem_responses(404, 409, 422, 503),
    },
)
async def cancel_order(
    order_id: OrderId,
    response: Response,
    client: TemporalClientDep,
    engine: EngineDep,
    body: Annotated[CancelRequest | None, Body(openapi_examples=CANCEL_EXAMPLES)] = None,
) -> OrderView:
    """Honoured until the parcel is handed to the carrier; asking again answers the same
    cancelled order."""
    handle: WorkflowHandle[object, object] = client.get_workflow_handle(order_workflow_id(order_id))
    deadline = asyncio.get_running_loop().time() + CANCEL_WAIT.total_seconds()
    try:
        # Accepted means the validator said yes; the order then stops at its next stage
        # boundary, releasing what it holds, which normally takes well under a second.
        update = await asyncio.wait_for(
            handle.start_update(
                UPDATE_CANCEL,
                body or CancelRequest(),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=OrderView,
            ),
            CANCEL_WAIT.total_seconds(),
        )
    except WorkflowUpdateFailedError as err:
        raise _update_failure(err) from None
    except TimeoutError:  # no worker took it up in time; asking again is safe
        raise temporal_unavailable(TimeoutError("cancel not accepted in time")) from None
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise temporal_unavailable(err) from None
    else:
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.1)
        try:
            view: OrderView = await asyncio.wait_for(update.result(), remaining)
            return view
        except WorkflowUpdateFailedError as err:  # a refusal arrives here, with the handle
            raise _update_failure(err) from None
        except TimeoutError:
            response.status_code = 202  # accepted, still unwinding
            return await load_order(client, engine, order_id)
    # The workflow is unknown or already closed: the read model tells which.
    closed = await to_thread.run_sync(_read_model_view, engine, order_id)
    if closed is None:
        raise not_found("order", f"there is no order {order_id}")
    if closed.status is OrderStatus.CANCELLED:
        return closed
    raise _refused(f"order {order_id} can no longer be cancelled: it is {closed.status.value}")
