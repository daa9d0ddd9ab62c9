"""Orders: place (start the workflow), read and list (the read model), cancel (the workflow's
`cancel` Update).

No handler ever awaits an order's result: an order lives for days.
"""

import base64
import binascii
import hmac
import json
import logging
import re
import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, BackgroundTasks, Body, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, and_, func, or_
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, select
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api import idempotency
from api.auth import Principal, PrincipalDep, forbidden
from api.deps import EngineDep, SessionDep, SettingsDep, TemporalClientDep
from api.metrics import ApiMetricsDep
from api.order_calls import Refusal, load_order, temporal_unavailable, update_responses
from api.order_updates import CallerDep, key_reused, order_update
from api.problems import ApiProblem, invalid, problem_responses
from database import read_only
from models.holds import HoldCode
from models.http import (
    CANCEL_EXAMPLES,
    CUSTOMER_ID_PATTERN,
    PLACE_ORDER_EXAMPLES,
    FieldError,
    OrderPage,
    OrderSummary,
    PlaceOrderRequest,
)
from models.orders import (
    CancelRequest,
    OrderLimits,
    OrderStatus,
    OrderTimeouts,
    OrderView,
    PlaceOrderInput,
    received_view,
)
from models.projection import placed_order_record
from models.tables import Customer, OrderHold, OrderRecord, Product
from models.wire import UPDATE_CANCEL
from temporal_client import start_order

router = APIRouter(prefix="/orders", tags=["orders"])
log = logging.getLogger("ordermill.api.orders")

CANCEL_REFUSED = Refusal("CancelRefused", "cancel-refused", "The order can no longer be cancelled")

ORDER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"
OrderId = Annotated[
    str,
    Path(min_length=1, max_length=100, pattern=ORDER_ID_PATTERN, examples=["ord_3f2a9c1d7e4b"]),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=idempotency.KEY_HEADER,
        pattern=idempotency.KEY_PATTERN,
        description="Any unique string (a UUID is best). Retrying with the same key and body "
        "returns the same order instead of placing a second one; the same key with another "
        "request is a 409. Keys are your own (no other client's collide) and kept for a day.",
    ),
]


def new_order_id() -> str:
    return f"ord_{uuid.uuid4().hex[:24]}"


# ---- placing an order ------------------------------------------------------------------------


def may_use_customer(customer: Customer | None, principal: Principal, *, production: bool) -> bool:
    """Operators may use any customer, a client its own, and in development the shared ones."""
    if customer is None:
        return False
    if principal.is_operator:
        return True
    if customer.owner is None:
        return not production
    return hmac.compare_digest(customer.owner, principal.name)


def _unknown_references(
    engine: Engine, request: PlaceOrderRequest, principal: Principal, *, production: bool
) -> list[FieldError]:
    """Catalog and customer checks the client can fix, answered before any workflow starts.

    Another client's customer is answered exactly as one that does not exist.
    """
    skus = {item.sku for item in request.items}
    with Session(read_only(engine)) as session:
        known = set(session.exec(select(Product.sku).where(col(Product.sku).in_(skus))))
        customer = session.get(Customer, request.customer_id)
    errors = [
        FieldError(field=f"items[{i}].sku", reason=f"{item.sku} is not in the catalog")
        for i, item in enumerate(request.items)
        if item.sku not in known
    ]
    if not may_use_customer(customer, principal, production=production):
        errors.insert(0, FieldError(field="customer_id", reason="there is no such customer"))
    return errors


@router.post(
    "",
    status_code=202,
    response_model=OrderView,
    summary="Place an order",
    responses={
        202: {
            "description": "Accepted: the order is being processed; follow `Location`",
            "headers": {
                "Location": {
                    "description": "The order, `/orders/{order_id}`",
                    "schema": {"type": "string"},
                }
            },
        },
        **problem_responses(409, 413, 422, 503),
    },
)
async def place_order(
    request: Annotated[PlaceOrderRequest, Body(openapi_examples=PLACE_ORDER_EXAMPLES)],
    response: Response,
    background: BackgroundTasks,
    client: TemporalClientDep,
    engine: EngineDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    metrics: ApiMetricsDep,
    idempotency_key: IdempotencyKey = None,
) -> OrderView:
    """Starts the order's workflow and answers at once with the order as it stands (usually
    `received`). Payment, stock and shipping happen afterwards; poll `GET /orders/{id}`."""
    errors = await to_thread.run_sync(
        partial(_unknown_references, production=settings.is_production),
        engine,
        request,
        principal,
    )
    if errors:
        raise invalid(errors)

    order_id, replayed = new_order_id(), False
    if idempotency_key is not None:
        try:
            claim = await to_thread.run_sync(
                idempotency.claim,
                engine,
                principal.name,
                idempotency_key,
                idempotency.fingerprint("POST /orders", request),
                order_id,
                settings.idempotency_key_ttl,
            )
        except idempotency.KeyReused as err:
            raise key_reused(err) from None
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
            review_timeout=settings.review_timeout,
            backorder_timeout=settings.backorder_timeout,
            auth_renew_margin=settings.auth_renew_margin,
        ),
        limits=OrderLimits(
            max_inquiries=settings.max_inquiries,
            risk_review_threshold=settings.risk_review_threshold,
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
        metrics.orders_placed.inc()
        # A new order id, so this request started the workflow: the order is `received`.
        # Querying it would wait for its worker's first task, most of the request's time.
        placed = received_view(order)
        # Written as soon as the answer is sent, so the answer never waits for SQLite's write
        # lock, which the worker takes many times a second under load.
        background.add_task(_record_placed, engine, placed)
        return placed
    try:
        return await load_order(client, engine, order_id)
    except ApiProblem:  # started, but neither its worker nor the read model has it yet
        return received_view(order)


def _record_placed(engine: Engine, placed: OrderView) -> None:
    """Put the new order in the read model, so reading and listing it do not wait for a
    worker; the workflow's own records replace this one. The order is placed either way: a
    failure here is logged, not answered."""
    try:
        with Session(engine) as session:
            if session.get(OrderRecord, placed.order_id) is not None:
                return  # the workflow recorded it first
            session.add(placed_order_record(placed))
            try:
                session.commit()
            except IntegrityError:  # ... at the same moment
                session.rollback()
    except SQLAlchemyError as err:
        log.warning("order %s placed but not yet in the read model: %s", placed.order_id, err)


# ---- reading and listing ---------------------------------------------------------------------


@router.get(
    "/{order_id}",
    response_model=OrderView,
    summary="Get an order",
    responses=problem_responses(404, 422, 503),
)
async def get_order(
    order_id: OrderId, request: Request, client: TemporalClientDep, engine: EngineDep
) -> OrderView:
    checked: OrderView | None = getattr(request.state, "order", None)  # by the access check
    if checked is not None and checked.order_id == order_id:
        return checked
    return await load_order(client, engine, order_id)


def encode_cursor(placed_at: datetime, order_id: str) -> str:
    raw = json.dumps([_utc(placed_at).isoformat(), order_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_CURSOR_ORDER_ID = re.compile(ORDER_ID_PATTERN)


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (placed_at, order_id) a page ended at; anything but a cursor we made is a 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        placed_at, order_id = json.loads(raw)
        if not isinstance(placed_at, str) or not isinstance(order_id, str):
            raise ValueError
        if not _CURSOR_ORDER_ID.fullmatch(order_id):
            raise ValueError
        # A time at the edge of the calendar (year 1 with an offset) overflows in UTC.
        return _utc(datetime.fromisoformat(placed_at)), order_id
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise invalid(
            [FieldError(field="cursor", reason="is not a cursor this API gave out")]
        ) from None


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get(
    "",
    response_model=OrderPage,
    summary="List orders, newest first; or a hold's queue, oldest hold first",
    responses=problem_responses(403, 422),
)
def list_orders(
    session: SessionDep,
    principal: PrincipalDep,
    customer_id: Annotated[str | None, Query(pattern=CUSTOMER_ID_PATTERN)] = None,
    status: OrderStatus | None = None,
    hold: Annotated[
        HoldCode | None,
        Query(description="Operators: the orders with an open hold of this code, oldest first"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> OrderPage:
    """From the read model, which follows each order within moments. Pages are keyset-based:
    orders placed while you page never make you skip or repeat one. A client key lists only
    the orders it placed.

    With `hold` (operators only) the page is that hold's queue, such as the risk reviews
    waiting for a decision: the orders whose hold of that code is open, the longest-waiting
    first."""
    if hold is not None and not principal.is_operator:
        raise forbidden("only operators may list the orders held for a decision")
    rows, next_cursor = find_orders(
        session,
        principal,
        customer_id=customer_id,
        status=status,
        holds=(hold,) if hold is not None else (),
        limit=limit,
        cursor=cursor,
    )
    items = [
        OrderSummary(
            order_id=row.order_id,
            customer_id=row.customer_id,
            status=OrderStatus(row.status),
            reason_code=row.reason_code,
            currency=row.currency,
            total=row.total,
            tracking_numbers=row.tracking_numbers,
            holds=row.open_holds or [],
            placed_at=_utc(row.placed_at),
            updated_at=_utc(row.updated_at),
        )
        for row in rows
    ]
    return OrderPage(items=items, next_cursor=next_cursor)


def find_orders(
    session: Session,
    principal: Principal,
    *,
    customer_id: str | None = None,
    status: OrderStatus | None = None,
    holds: Collection[HoldCode] = (),
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[OrderRecord], str | None]:
    """A page of the read model's orders and the cursor of the next page (None at the end):
    GET /orders's query, which the operator console's queue and search share.

    Newest first; with `holds`, the orders with an open hold of any of those codes, the
    longest-waiting first. A client sees only the orders it placed. A cursor we did not make
    is a 422 problem.
    """
    # The column pages are keyed on: when the hold was placed, or when the order was.
    key: Any = col(OrderRecord.placed_at)
    if holds:
        # One row per order, however many holds of the codes it has open (two parcels' declined
        # captures, say), at its longest-waiting one.
        held = (
            select(col(OrderHold.order_id), func.min(col(OrderHold.placed_at)).label("held_at"))
            .where(
                col(OrderHold.code).in_([code.value for code in holds]),
                col(OrderHold.resolved_at).is_(None),
            )
            .group_by(col(OrderHold.order_id))
            .subquery()
        )
        key = held.c.held_at
    query = select(OrderRecord, key)
    if holds:
        query = query.join(held, held.c.order_id == col(OrderRecord.order_id))
    if not principal.is_operator:
        query = query.where(OrderRecord.placed_by == principal.name)
    if customer_id is not None:
        query = query.where(OrderRecord.customer_id == customer_id)
    if status is not None:
        query = query.where(OrderRecord.status == status.value)
    order_id = col(OrderRecord.order_id)
    if cursor is not None:
        at, after = decode_cursor(cursor)
        if holds:  # oldest first: the next page is later
            query = query.where(or_(key > at, and_(key == at, order_id > after)))
        else:
            query = query.where(or_(key < at, and_(key == at, order_id < after)))
    if holds:
        query = query.order_by(key.asc(), order_id.asc())
    else:
        query = query.order_by(key.desc(), order_id.desc())
    rows = session.exec(query.limit(limit + 1)).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last, at = page[-1]
        next_cursor = encode_cursor(at, last.order_id)
    return [row for row, _ in page], next_cursor


# ---- cancelling ------------------------------------------------------------------------------


@router.post(
    "/{order_id}/cancel",
    response_model=OrderView,
    summary="Cancel an order",
    responses=update_responses(200, "Cancelled: stock released, card authorization voided"),
)
async def cancel_order(
    order_id: OrderId,
    caller: CallerDep,
    body: Annotated[CancelRequest | None, Body(openapi_examples=CANCEL_EXAMPLES)] = None,
) -> OrderView | JSONResponse:
    """Honoured until the parcel is handed to the carrier; asking again answers the same
    cancelled order (so it needs no Idempotency-Key). Accepted means the validator said yes;
    the order then stops at its next stage boundary, releasing what it holds, which normally
    takes well under a second."""

    async def when_closed(closed: OrderView) -> OrderView:
        if closed.status is OrderStatus.CANCELLED:
            return closed
        raise CANCEL_REFUSED.problem(
            f"order {order_id} can no longer be cancelled: it is {closed.status.value}"
        )

    return await order_update(
        caller,
        order_id,
        "cancel",
        UPDATE_CANCEL,
        body or CancelRequest(),
        OrderView,
        refusal=CANCEL_REFUSED,
        key=None,
        when_closed=when_closed,
    )
