"""Customer service on an order: returns, inquiries, feedback, and operators' goodwill refunds.

Each is one of the order workflow's Updates. Its validator refuses what the order cannot do
(too late, not delivered, too many, feedback twice, more than is left to refund), and that
refusal is a 409 carrying the order's own reason. An order that has closed answers 409 too; an
unknown one 404.

A retried POST would be a second return or a second refund, so an `Idempotency-Key` header
becomes the Update's id: Temporal answers a repeated id with the first request's outcome.
"""

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Header
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Engine
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api import idempotency
from api.auth import OperatorOnly
from api.deps import EngineDep, TemporalClientDep
from api.problems import ApiProblem, problem_responses
from api.routes.orders import OrderId, load_order, temporal_unavailable
from models.http import FEEDBACK_EXAMPLES, INQUIRY_EXAMPLES, REFUND_EXAMPLES, RETURN_EXAMPLES
from models.orders import (
    FeedbackRequest,
    FeedbackView,
    GoodwillRefundRequest,
    InquiryRequest,
    InquiryView,
    OrderView,
    RefundView,
    ReturnRequest,
    ReturnView,
)
from models.wire import (
    UPDATE_ASK,
    UPDATE_FEEDBACK,
    UPDATE_REFUND,
    UPDATE_REQUEST_RETURN,
    order_workflow_id,
)

router = APIRouter(prefix="/orders", tags=["customer service"])

# Accepting takes one workflow task; completing may wait on the carrier, the card processor or
# the mail server, which retry on their own. Past this the client gets 202 and follows the order.
UPDATE_WAIT = timedelta(seconds=20)

View = TypeVar("View", bound=BaseModel)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=idempotency.KEY_HEADER,
        pattern=idempotency.KEY_PATTERN,
        description="Any unique string (a UUID is best). Retrying with the same key answers "
        "the first request's outcome instead of acting twice.",
    ),
]


@dataclass(frozen=True)
class Refusal:
    """How a validator's refusal (`ApplicationError(type=error_type)`) reads as a problem."""

    error_type: str
    kind: str
    title: str


RETURN_REFUSED = Refusal("ReturnRefused", "return-refused", "The return cannot be accepted")
REFUND_REFUSED = Refusal("RefundRefused", "refund-refused", "The refund cannot be made")
FEEDBACK_REFUSED = Refusal("FeedbackRefused", "feedback-refused", "Feedback cannot be given")

ACCEPTED_IN_PROGRESS: dict[int | str, dict[str, Any]] = {
    202: {
        "model": OrderView,
        "description": "Accepted and still in progress: the order as it stands; follow "
        "`Location` to see the outcome",
    }
}


async def run_update(
    client: Client,
    engine: Engine,
    order_id: str,
    update: str,
    request: BaseModel,
    result_type: type[View],
    *,
    refusal: Refusal | None,
    idempotency_key: str | None,
) -> View | JSONResponse:
    """Run one Update on the order; its result, or a 202 with the order if it takes too long."""
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
        raise await _closed(client, engine, order_id) from None

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
        return ApiProblem(409, refusal.kind, cause.message, title=refusal.title)
    return err


async def _closed(client: Client, engine: Engine, order_id: str) -> ApiProblem:
    """No running workflow: 404 for an unknown order (load_order raises it), else 409."""
    closed = await load_order(client, engine, order_id)
    return ApiProblem(
        409,
        "order-closed",
        f"the order is closed: it is {closed.status.value}",
        title="The order is closed",
    )


@router.post(
    "/{order_id}/returns",
    status_code=201,
    response_model=ReturnView,
    summary="Return items of a delivered order",
    responses={
        201: {"description": "Accepted: the return label's tracking number is in the answer"},
        **ACCEPTED_IN_PROGRESS,
        **problem_responses(404, 409, 422, 503),
    },
)
async def request_return(
    order_id: OrderId,
    request: Annotated[ReturnRequest, Body(openapi_examples=RETURN_EXAMPLES)],
    client: TemporalClientDep,
    engine: EngineDep,
    idempotency_key: IdempotencyKey = None,
) -> ReturnView | JSONResponse:
    """Within the return window, for delivered quantities not returned already. Physical items
    get a return label (its tracking number is in the answer and the email); once the parcel
    is back, the order refunds the lines or ships them again (`resolution`). Digital items are
    refunded at once and their download link stops working."""
    return await run_update(
        client,
        engine,
        order_id,
        UPDATE_REQUEST_RETURN,
        request,
        ReturnView,
        refusal=RETURN_REFUSED,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/{order_id}/inquiries",
    status_code=201,
    response_model=InquiryView,
    summary="Ask customer support about an order",
    responses={**ACCEPTED_IN_PROGRESS, **problem_responses(404, 409, 422, 503)},
)
async def ask(
    order_id: OrderId,
    request: Annotated[InquiryRequest, Body(openapi_examples=INQUIRY_EXAMPLES)],
    client: TemporalClientDep,
    engine: EngineDep,
    idempotency_key: IdempotencyKey = None,
) -> InquiryView | JSONResponse:
    """Goes on the order's timeline and to the support mailbox, with the order attached."""
    return await run_update(
        client,
        engine,
        order_id,
        UPDATE_ASK,
        request,
        InquiryView,
        refusal=None,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/{order_id}/feedback",
    status_code=201,
    response_model=FeedbackView,
    summary="Rate a delivered order",
    responses={**ACCEPTED_IN_PROGRESS, **problem_responses(404, 409, 422, 503)},
)
async def give_feedback(
    order_id: OrderId,
    request: Annotated[FeedbackRequest, Body(openapi_examples=FEEDBACK_EXAMPLES)],
    client: TemporalClientDep,
    engine: EngineDep,
    idempotency_key: IdempotencyKey = None,
) -> FeedbackView | JSONResponse:
    """Once per order, after delivery: a second rating is a 409."""
    return await run_update(
        client,
        engine,
        order_id,
        UPDATE_FEEDBACK,
        request,
        FeedbackView,
        refusal=FEEDBACK_REFUSED,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/{order_id}/refunds",
    status_code=201,
    response_model=RefundView,
    summary="Refund part of an order as a goodwill gesture (operators)",
    responses={**ACCEPTED_IN_PROGRESS, **problem_responses(403, 404, 409, 422, 503)},
    dependencies=[OperatorOnly],  # a client key is refused with 403
)
async def goodwill_refund(
    order_id: OrderId,
    request: Annotated[GoodwillRefundRequest, Body(openapi_examples=REFUND_EXAMPLES)],
    client: TemporalClientDep,
    engine: EngineDep,
    idempotency_key: IdempotencyKey = None,
) -> RefundView | JSONResponse:
    """For operators. Bounded by what is left of the captured amount after every earlier
    refund; more than that is a 409 naming what is left. Send an `Idempotency-Key`: a retry
    without one could refund twice."""
    return await run_update(
        client,
        engine,
        order_id,
        UPDATE_REFUND,
        request,
        RefundView,
        refusal=REFUND_REFUSED,
        idempotency_key=idempotency_key,
    )
