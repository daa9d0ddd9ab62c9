"""Calling an order's workflow from a request: reading it, and running one of its Updates.

Shared by every route that touches an order, so they answer alike. An Update is sent in two
steps, so the answer always says truthfully where it stands:

1. `start_update(wait_for_stage=ACCEPTED)`: the order's validator takes it or refuses it.
   Refused: 409 with the order's reason. Not accepted within UPDATE_WAIT (no worker took it
   up, Temporal unreachable): 503, saying it may still be applied and to retry with the same
   Idempotency-Key, whose Update id Temporal answers with the first outcome.
2. The accepted Update's result, for what is left of UPDATE_WAIT: its result (200/201), a
   refusal from the handler (409), or, still running, 202 with the order as it stands and
   `Location` to follow it; the Update carries on in the order either way.

An order whose workflow has ended answers from its read model (409 "closed" by default), an
unknown one 404.
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
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.problems import ApiProblem, not_found, problem_responses
from database import read_only
from models.orders import OrderView
from models.tables import OrderRecord
from models.wire import QUERY_STATUS, order_workflow_id

log = logging.getLogger("ordermill.api.orders")

# How long a request waits on Temporal before answering from what it has.
QUERY_TIMEOUT = timedelta(seconds=2)
# Beyond its own RPC deadline, how long a step may overrun before the request stops waiting:
# the SDK polls again when the server answers "not yet" just before a deadline.
_BACKSTOP = timedelta(seconds=1)
# The server's failure for an accepted Update whose workflow ended before it finished.
_UPDATE_OUTLIVED_WORKFLOW = "AcceptedUpdateCompletedWorkflow"

View = TypeVar("View", bound=BaseModel)


def temporal_unavailable(err: Exception) -> ApiProblem:
    log.warning("Temporal call failed: %s", err)
    return ApiProblem(
        503,
        "temporal-unavailable",
        "Orders cannot be reached right now; please retry shortly.",
        headers={"Retry-After": "5"},
    )


def not_accepted(update: str, wait: timedelta, *, keyed: bool, err: Exception) -> ApiProblem:
    """Temporal did not confirm the Update was accepted: it may or may not run."""
    log.warning("%s not accepted within %s: %r", update, wait, err)
    retry = (
        "Retry with the same Idempotency-Key: you then get its outcome, and it is never "
        "applied twice."
        if keyed
        else "Retry shortly, and send an Idempotency-Key so that a retry can never apply it twice."
    )
    return ApiProblem(
        503,
        "update-not-accepted",
        f"The order did not confirm within {wait.total_seconds():g} s that it took this "
        f"request, so it may still be applied. {retry}",
        title="Not accepted yet",
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
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
        # The workflow is there but cannot answer yet (its first task failed, say).
        raise temporal_unavailable(err) from None
    return view


@dataclass(frozen=True)
class Refusal:
    """How the order's refusal (`ApplicationError(type=error_type)`) reads as a problem;
    `also` for the other refusals one Update may answer (a hold unknown, or decided)."""

    error_type: str
    kind: str
    title: str
    status: int = 409
    also: tuple["Refusal", ...] = ()

    def problem(self, detail: str) -> ApiProblem:
        return ApiProblem(self.status, self.kind, detail, title=self.title)

    def matching(self, error_type: str | None) -> "Refusal | None":
        return next((r for r in (self, *self.also) if r.error_type == error_type), None)


ACCEPTED_IN_PROGRESS: dict[int | str, dict[str, Any]] = {
    202: {
        "model": OrderView,
        "description": "Accepted and still in progress after UPDATE_WAIT: the order as it "
        "stands; follow `Location` to see the outcome",
        "headers": {
            "Location": {
                "description": "The order, `/orders/{order_id}`",
                "schema": {"type": "string"},
            }
        },
    }
}


def update_responses(
    status: int, description: str, *problems: int
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI answers of a route that runs an Update: done, still running (202), and the
    problems every Update may answer, plus `problems`. (401 comes with the router.)"""
    return {
        status: {"description": description},
        **ACCEPTED_IN_PROGRESS,
        **problem_responses(404, 409, 413, 422, 503, *problems),
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
    refusal: Refusal,
    wait: timedelta,
    update_id: str | None = None,
    when_closed: Callable[[OrderView], Awaitable[Any]] = order_closed,
) -> View | JSONResponse:
    """Run one Update on the order: its result, or a 202 with the order if it outlasts `wait`.

    `update_id` (from an Idempotency-Key, see api.idempotency) makes a retry get the first
    request's outcome. `when_closed` answers for an order whose workflow has ended.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait.total_seconds()
    handle = client.get_workflow_handle(order_workflow_id(order_id))
    try:
        async with asyncio.timeout(wait.total_seconds() + _BACKSTOP.total_seconds()):
            started = await handle.start_update(
                update,
                request,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=result_type,
                id=update_id,
                rpc_timeout=wait,
            )
    except WorkflowUpdateFailedError as err:  # the validator said no
        return await _refused(err, refusal, engine, order_id, when_closed)
    except (WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError) as err:
        raise not_accepted(update, wait, keyed=update_id is not None, err=err) from None
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise not_accepted(update, wait, keyed=update_id is not None, err=err) from None
        return await _closed(engine, order_id, when_closed)

    # Accepted: it runs to its end in the order whatever happens to this request.
    remaining = max(deadline - loop.time(), 0.05)
    try:
        async with asyncio.timeout(remaining + _BACKSTOP.total_seconds()):
            result: View = await started.result(rpc_timeout=timedelta(seconds=remaining))
    except WorkflowUpdateFailedError as err:  # the handler refused (a refund that lost a race)
        return await _refused(err, refusal, engine, order_id, when_closed)
    except (WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError, RPCError) as err:
        log.info("%s on order %s still running after %s (%r)", update, order_id, wait, err)
        view = await load_order(client, engine, order_id)
        return JSONResponse(
            jsonable_encoder(view), status_code=202, headers={"Location": f"/orders/{order_id}"}
        )
    return result


async def _closed(
    engine: Engine, order_id: str, when_closed: Callable[[OrderView], Awaitable[Any]]
) -> Any:
    closed = await to_thread.run_sync(read_model_view, engine, order_id)
    if closed is None:
        raise not_found("order", f"there is no order {order_id}")
    return await when_closed(closed)


async def _refused(
    err: WorkflowUpdateFailedError,
    refusal: Refusal,
    engine: Engine,
    order_id: str,
    when_closed: Callable[[OrderView], Awaitable[Any]],
) -> Any:
    """The order's refusal as a 409, in its words; never a 500.

    Refusals are `ApplicationError`s whose type ends in `Refused`, worded for people. Any other
    failure (a bug, say) is logged and answered without its internals.
    """
    cause = err.cause
    if isinstance(cause, ApplicationError):
        if (matched := refusal.matching(cause.type)) is not None:
            raise matched.problem(cause.message)
        if cause.type == _UPDATE_OUTLIVED_WORKFLOW:
            return await _closed(engine, order_id, when_closed)
        if cause.type and cause.type.endswith("Refused"):
            raise ApiProblem(409, "update-refused", cause.message, title=refusal.title)
    log.error("order %s: an Update failed unexpectedly: %r", order_id, cause or err)
    raise ApiProblem(
        409,
        "update-failed",
        "The order could not carry this out; the cause has been logged for our operators. "
        "Read the order to see where it stands.",
        title=refusal.title,
    )
