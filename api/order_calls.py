"""Calling an order's workflow from a request: reading it, and running one of its Updates.

Shared by every route that touches an order, so they answer alike: the order from its read
model; a validator's refusal as a 409 with the order's reason; 202 when an accepted Update
outlasts the request; 503 when Temporal cannot be reached.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from anyio import to_thread
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.problems import ApiProblem, not_found
from database import read_only
from models.orders import OrderView
from models.tables import OrderRecord
from models.wire import QUERY_STATUS, order_workflow_id

log = logging.getLogger("ordermill.api.orders")

# How long a request waits on Temporal before answering from what it has.
QUERY_TIMEOUT = timedelta(seconds=2)
# Accepting takes one workflow task; completing may wait on the carrier, the card processor or
# the mail server, which retry on their own. Past this the client gets 202 and follows the order.
UPDATE_WAIT = timedelta(seconds=20)

View = TypeVar("View", bound=BaseModel)


def temporal_unavailable(err: Exception) -> ApiProblem:
    log.warning("Temporal call failed: %s", err)
    return ApiProblem(
        503,
        "temporal-unavailable",
        "Orders cannot be reached right now; please retry shortly.",
        headers={"Retry-After": "5"},
    )


def read_model_view(engine: Engine, order_id: str) -> OrderView | None:
    with Session(read_only(engine)) as session:
        row = session.get(OrderRecord, order_id)
        return OrderView.model_validate_json(row.view_json) if row is not None else None


async def load_order(client: Client, engine: Engine, order_id: str) -> OrderView:
    """The order from its read model; the workflow itself only for an order not recorded yet.

    The workflow records each change in the read model within the workflow task that makes it,
    so a read trails the workflow by moments, and a poll costs the server and the worker
    nothing. POST /orders records a placed order itself; only an order started elsewhere (the
    CLI) is queried, until the workflow's first record.
    """
    stored = await to_thread.run_sync(read_model_view, engine, order_id)
    if stored is not None:
        return stored
    handle = client.get_workflow_handle(order_workflow_id(order_id))
    try:
        view: OrderView = await handle.query(
            QUERY_STATUS, result_type=OrderView, rpc_timeout=QUERY_TIMEOUT
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise not_found("order", f"there is no order {order_id}") from None
        raise temporal_unavailable(err) from None
    return view


@dataclass(frozen=True)
class Refusal:
    """How a validator's refusal (`ApplicationError(type=error_type)`) reads as a problem."""

    error_type: str
    kind: str
    title: str

    def problem(self, detail: str) -> ApiProblem:
        return ApiProblem(409, self.kind, detail, title=self.title)


ACCEPTED_IN_PROGRESS: dict[int | str, dict[str, Any]] = {
    202: {
        "model": OrderView,
        "description": "Accepted and still in progress: the order as it stands; follow "
        "`Location` to see the outcome",
    }
}


async def order_closed(closed: OrderView) -> OrderView:
    """What an Update on an order that no longer runs answers by default: 409."""
    raise ApiProblem(
        409,
        "order-closed",
        f"the order is closed: it is {closed.status.value}",
        title="The order is closed",
    )


async def run_update(
    client: Client,
    engine: Engine,
    order_id: str,
    update: str,
    request: BaseModel,
    result_type: type[View],
    *,
    refusal: Refusal | None,
    idempotency_key: str | None = None,
    when_closed: Callable[[OrderView], Awaitable[Any]] = order_closed,
) -> View | JSONResponse:
    """Run one Update on the order; its result, or a 202 with the order if it takes too long.

    `when_closed` answers for an order whose workflow has ended (404 if there is none at all).
    """
    handle = client.get_workflow_handle(order_workflow_id(order_id))
    deadline = asyncio.get_running_loop().time() + UPDATE_WAIT.total_seconds()
    try:
        started = await asyncio.wait_for(
            handle.start_update(
                update,
                request,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=result_type,
                id=f"{update}:{idempotency_key}" if idempotency_key else None,
            ),
            UPDATE_WAIT.total_seconds(),
        )
    except WorkflowUpdateFailedError as err:  # the validator said no
        raise _failure(err, refusal) from None
    except TimeoutError:  # no worker took it up in time: nothing has happened yet
        raise temporal_unavailable(TimeoutError(f"{update} not accepted in time")) from None
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise temporal_unavailable(err) from None
        closed = await to_thread.run_sync(read_model_view, engine, order_id)
        if closed is None:
            raise not_found("order", f"there is no order {order_id}") from None
        answer: View | JSONResponse = await when_closed(closed)
        return answer

    remaining = max(deadline - asyncio.get_running_loop().time(), 0.1)
    try:
        result: View = await asyncio.wait_for(started.result(), remaining)
    except WorkflowUpdateFailedError as err:  # the handler refused (a refund that lost a race)
        raise _failure(err, refusal) from None
    except TimeoutError:  # accepted; it finishes on its own and shows up on the order
        view = await load_order(client, engine, order_id)
        return JSONResponse(
            jsonable_encoder(view), status_code=202, headers={"Location": f"/orders/{order_id}"}
        )
    except RPCError as err:
        raise temporal_unavailable(err) from None
    return result


def _failure(err: WorkflowUpdateFailedError, refusal: Refusal | None) -> Exception:
    """The order's refusal as a 409; anything else stays an error (logged, answered 500)."""
    cause = err.cause
    if (
        refusal is not None
        and isinstance(cause, ApplicationError)
        and cause.type == refusal.error_type
    ):
        return refusal.problem(cause.message)
    return err
