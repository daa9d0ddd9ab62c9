"""Operators' decisions on an order's holds: release (the held step runs again) or reject (it
is given up, as the order's stage allows; see workflows.holds).

Each is the workflow's `resolve_hold` Update. The answer is the order once the decision is in
its read model; 202 while it is still taking effect; 404 for an unknown order or hold, 409 for
a hold already decided; 403 for a client key. Deciding twice with the same Idempotency-Key
answers the first outcome.
"""

from typing import Annotated

from fastapi import APIRouter, Body, Path
from fastapi.responses import JSONResponse

from api.auth import OperatorOnly
from api.order_calls import Refusal, update_responses
from api.order_updates import CallerDep, OptionalKey, order_update
from api.problems import problem_responses
from api.routes.orders import OrderId
from models.holds import HoldDecision, HoldResolution
from models.http import (
    HOLD_REJECTION_EXAMPLES,
    HOLD_RELEASE_EXAMPLES,
    HoldRejection,
    HoldRelease,
)
from models.orders import OrderView
from models.wire import UPDATE_RESOLVE_HOLD

router = APIRouter(prefix="/orders", tags=["holds"], dependencies=[OperatorOnly])

HOLD_REFUSED = Refusal(
    "HoldRefused",
    "hold-decision-refused",
    "The decision cannot be taken",
    also=(
        Refusal("HoldNotFound", "hold-not-found", "No such hold", status=404),
        Refusal("HoldResolved", "hold-resolved", "The hold is already decided"),
    ),
)
HoldId = Annotated[
    str,
    Path(
        pattern=r"^[a-z_]{1,40}(-[0-9]{1,4})?$",
        description="As in the order's `holds`: the code, then `code-2`, `code-3`...",
        examples=["capture_declined"],
    ),
]
_RESPONSES = {
    **update_responses(200, "Decided: the order as it now stands"),
    **problem_responses(403),
}


async def decide(
    caller: CallerDep,
    order_id: str,
    decision: HoldDecision,
    key: str | None,
) -> OrderView | JSONResponse:
    """The one path for a decision, the API's and the operator console's alike."""
    return await order_update(
        caller,
        order_id,
        f"holds/{decision.hold_id}/{decision.resolution}",
        UPDATE_RESOLVE_HOLD,
        decision,
        OrderView,
        refusal=HOLD_REFUSED,
        key=key,
    )


@router.post(
    "/{order_id}/holds/{hold_id}/release",
    response_model=OrderView,
    summary="Release a hold: the held step runs again (operators)",
    responses=_RESPONSES,
)
async def release_hold(
    order_id: OrderId,
    hold_id: HoldId,
    caller: CallerDep,
    body: Annotated[HoldRelease | None, Body(openapi_examples=HOLD_RELEASE_EXAMPLES)] = None,
    idempotency_key: OptionalKey = None,
) -> OrderView | JSONResponse:
    """A declined capture is tried again, a refused refund sent again, a step whose system was
    down run again, data the database refused recorded with its placeholder."""
    reason = body.reason if body is not None else None
    decision = HoldDecision(hold_id=hold_id, resolution=HoldResolution.RELEASED, reason=reason)
    return await decide(caller, order_id, decision, idempotency_key)


@router.post(
    "/{order_id}/holds/{hold_id}/reject",
    response_model=OrderView,
    summary="Reject a hold: the held step is given up (operators)",
    responses=_RESPONSES,
)
async def reject_hold(
    order_id: OrderId,
    hold_id: HoldId,
    body: Annotated[HoldRejection, Body(openapi_examples=HOLD_REJECTION_EXAMPLES)],
    caller: CallerDep,
    idempotency_key: OptionalKey = None,
) -> OrderView | JSONResponse:
    """A declined capture is written off, a refused refund recorded as settled outside
    ordermill; a step before anything was handed to the carrier cancels the order, one after
    gives up only that parcel. The reason is required and goes on the timeline."""
    decision = HoldDecision(hold_id=hold_id, resolution=HoldResolution.REJECTED, reason=body.reason)
    return await decide(caller, order_id, decision, idempotency_key)
