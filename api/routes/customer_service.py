"""Customer service on an order: returns, inquiries, feedback, and operators' goodwill refunds.

Each is one of the order workflow's Updates. Its validator refuses what the order cannot do
(too late, not delivered, too many, feedback twice, more than is left to refund), and that
refusal is a 409 carrying the order's own reason. An order that has closed answers 409 too; an
unknown one 404. An Update still running after UPDATE_WAIT is a 202 (see api.order_calls).

Returns and refunds move money, so they require an `Idempotency-Key` (400 without one): it
becomes the Update's id, and Temporal answers a retry with the first request's outcome.
Questions and feedback take one too, optionally.
"""

from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from api.auth import OperatorOnly
from api.order_calls import Refusal, update_responses
from api.order_updates import CallerDep, OptionalKey, RequiredKey, order_update
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

RETURN_REFUSED = Refusal("ReturnRefused", "return-refused", "The return cannot be accepted")
REFUND_REFUSED = Refusal("RefundRefused", "refund-refused", "The refund cannot be made")
FEEDBACK_REFUSED = Refusal("FeedbackRefused", "feedback-refused", "Feedback cannot be given")
INQUIRY_REFUSED = Refusal("InquiryRefused", "inquiry-refused", "The question cannot be taken")


@router.post(
    "/{order_id}/returns",
    status_code=201,
    response_model=ReturnView,
    summary="Return items of a delivered order",
    responses={
        **update_responses(201, "Accepted: the return label's tracking number is in the answer"),
        **problem_responses(400),
    },
)
async def request_return(
    order_id: OrderId,
    request: Annotated[ReturnRequest, Body(openapi_examples=RETURN_EXAMPLES)],
    caller: CallerDep,
    idempotency_key: RequiredKey,
) -> ReturnView | JSONResponse:
    """Within the return window, for delivered quantities not returned already. Physical items
    get a return label (its tracking number is in the answer and the email); once the parcel
    is back, the order refunds the lines or ships them again (`resolution`). Digital items are
    refunded at once and their download link stops working."""
    return await order_update(
        caller,
        order_id,
        "returns",
        UPDATE_REQUEST_RETURN,
        request,
        ReturnView,
        refusal=RETURN_REFUSED,
        key=idempotency_key,
    )


@router.post(
    "/{order_id}/inquiries",
    status_code=201,
    response_model=InquiryView,
    summary="Ask customer support about an order",
    responses=update_responses(201, "Taken: on the order's timeline and sent to support"),
)
async def ask(
    order_id: OrderId,
    request: Annotated[InquiryRequest, Body(openapi_examples=INQUIRY_EXAMPLES)],
    caller: CallerDep,
    idempotency_key: OptionalKey = None,
) -> InquiryView | JSONResponse:
    """Goes on the order's timeline and to the support mailbox, with the order attached."""
    return await order_update(
        caller,
        order_id,
        "inquiries",
        UPDATE_ASK,
        request,
        InquiryView,
        refusal=INQUIRY_REFUSED,
        key=idempotency_key,
    )


@router.post(
    "/{order_id}/feedback",
    status_code=201,
    response_model=FeedbackView,
    summary="Rate a delivered order",
    responses=update_responses(201, "Taken"),
)
async def give_feedback(
    order_id: OrderId,
    request: Annotated[FeedbackRequest, Body(openapi_examples=FEEDBACK_EXAMPLES)],
    caller: CallerDep,
    idempotency_key: OptionalKey = None,
) -> FeedbackView | JSONResponse:
    """Once per order, after delivery: a second rating is a 409."""
    return await order_update(
        caller,
        order_id,
        "feedback",
        UPDATE_FEEDBACK,
        request,
        FeedbackView,
        refusal=FEEDBACK_REFUSED,
        key=idempotency_key,
    )


@router.post(
    "/{order_id}/refunds",
    status_code=201,
    response_model=RefundView,
    summary="Refund part of an order as a goodwill gesture (operators)",
    responses={**update_responses(201, "Refunded"), **problem_responses(400, 403)},
    dependencies=[OperatorOnly],  # a client key is refused with 403
)
async def goodwill_refund(
    order_id: OrderId,
    request: Annotated[GoodwillRefundRequest, Body(openapi_examples=REFUND_EXAMPLES)],
    caller: CallerDep,
    idempotency_key: RequiredKey,
) -> RefundView | JSONResponse:
    """For operators. Bounded by what is left of the captured amount after every earlier
    refund; more than that is a 409 naming what is left. The `Idempotency-Key` is required:
    a retry with it never refunds twice."""
    return await order_update(
        caller,
        order_id,
        "refunds",
        UPDATE_REFUND,
        request,
        RefundView,
        refusal=REFUND_REFUSED,
        key=idempotency_key,
    )
