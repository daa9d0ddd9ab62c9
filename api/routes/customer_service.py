"""Customer service on an order: returns, inquiries, feedback, and operators' goodwill refunds.

Each is one of the order workflow's Updates. Its validator refuses what the order cannot do
(too late, not delivered, too many, feedback twice, more than is left to refund), and that
refusal is a 409 carrying the order's own reason. An order that has closed answers 409 too; an
unknown one 404.

A retried POST would be a second return or a second refund, so an `Idempotency-Key` header
becomes the Update's id: Temporal answers a repeated id with the first request's outcome.
"""

from typing import Annotated

from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse

from api import idempotency
from api.auth import OperatorOnly
from api.deps import EngineDep, TemporalClientDep
from api.order_calls import ACCEPTED_IN_PROGRESS, Refusal, run_update
from api.problems import problem_responses
from api.routes.orders import OrderId
from models.http import FEEDBACK_EXAMPLES, INQUIRY_EXAMPLES, REFUND_EXAMPLES, RETURN_EXAMPLES
from models.orders import (
    FeedbackRequest,
    FeedbackView,
    GoodwillRefundRequest,
    InquiryRequest,
    InquiryView,
    RefundView,
    ReturnRequest,
    ReturnView,
)
from models.wire import (
    UPDATE_ASK,
    UPDATE_FEEDBACK,
    UPDATE_REFUND,
    UPDATE_REQUEST_RETURN,
)

router = APIRouter(prefix="/orders", tags=["customer service"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=idempotency.KEY_HEADER,
        pattern=idempotency.KEY_PATTERN,
        description="Any unique string (a UUID is best). Retrying with the same key answers "
        "the first request's outcome instead of acting twice.",
    ),
]


RETURN_REFUSED = Refusal("ReturnRefused", "return-refused", "The return cannot be accepted")
REFUND_REFUSED = Refusal("RefundRefused", "refund-refused", "The refund cannot be made")
FEEDBACK_REFUSED = Refusal("FeedbackRefused", "feedback-refused", "Feedback cannot be given")


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
