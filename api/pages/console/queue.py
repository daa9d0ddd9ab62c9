"""The review queue, and an operator's decision on a hold."""

import logging
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode

from anyio import to_thread
from fastapi import Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session

from api.auth import Principal
from api.deps import EngineDep, SettingsDep, TemporalClientDep
from api.order_updates import Caller
from api.pages.console.common import (
    CUSTOMER_ID,
    HOLD_ID,
    IDEMPOTENCY_KEY,
    ORDER_ID,
    PREFIX,
    QUEUE_PAGE_SIZE,
    QUEUED_HOLDS,
    ConsoleDep,
    ConsoleSession,
    cross_site,
    decision_forms,
    decision_purpose,
    field,
    notice,
    page,
    read_form,
    redirect,
    refused,
    router,
    to_sign_in,
)
from api.pages.console.orders import order_page_again
from api.problems import ApiProblem, field_errors
from api.routes import holds as hold_routes
from api.routes.orders import find_orders
from database import read_only
from models.holds import HoldDecision, HoldResolution, HoldView
from models.http import HoldRejection, HoldRelease
from models.orders import OrderView

log = logging.getLogger("ordermill.api.console")

# ---- the review queue ------------------------------------------------------------------------


@dataclass(frozen=True)
class QueuedOrder:
    view: OrderView
    holds: list[HoldView]  # its open holds an operator decides, oldest first


def _queue(
    engine: Engine, principal: Principal, customer_id: str | None, cursor: str | None
) -> tuple[list[QueuedOrder], str | None]:
    with Session(read_only(engine)) as db:
        rows, next_cursor = find_orders(
            db,
            principal,
            customer_id=customer_id,
            holds=QUEUED_HOLDS,
            limit=QUEUE_PAGE_SIZE,
            cursor=cursor,
        )
    queued = []
    for row in rows:
        view = OrderView.model_validate_json(row.view_json)
        open_holds = [h for h in view.holds if h.resolution is None and h.code in QUEUED_HOLDS]
        queued.append(QueuedOrder(view, sorted(open_holds, key=lambda h: h.placed_at)))
    return queued, next_cursor


async def _queue_page(
    request: Request,
    session: ConsoleSession,
    engine: Engine,
    *,
    customer_id: str = "",
    cursor: str = "",
    notice: str | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    if customer_id and not CUSTOMER_ID.fullmatch(customer_id):
        problem, status_code = "A customer id is letters, digits, _ and -.", 422
        customer_id = cursor = ""
    try:
        queued, next_cursor = await to_thread.run_sync(
            _queue, engine, session.principal, customer_id or None, cursor or None
        )
    except ApiProblem as err:  # a cursor we did not make
        queued, next_cursor = [], None
        problem, status_code = err.detail, err.status
    forms = {q.view.order_id: decision_forms(session, q.view, q.holds) for q in queued}
    only = {"customer_id": customer_id} if customer_id else {}
    next_page = None
    if next_cursor is not None:
        next_page = f"{PREFIX}?{urlencode({**only, 'cursor': next_cursor})}"
    return page(
        request,
        session,
        "queue.html",
        {
            "queued": queued,
            "forms": forms,
            "customer_id": customer_id,
            "next_page": next_page,
            "first_page": f"{PREFIX}?{urlencode(only)}".rstrip("?") if cursor else None,
            "notice": notice,
            "problem": problem,
        },
        status_code=status_code,
    )


@router.get("", response_model=None)
async def queue(
    request: Request,
    session: ConsoleDep,
    engine: EngineDep,
    customer_id: str = "",
    cursor: str = "",
    decided: str | None = None,
    outcome: str | None = None,
) -> HTMLResponse | RedirectResponse:
    """The orders waiting for an operator, the longest-waiting first, each hold with its why."""
    if session is None:
        return to_sign_in(request)
    return await _queue_page(
        request,
        session,
        engine,
        customer_id=customer_id.strip(),
        cursor=cursor,
        notice=notice(decided, outcome),
    )


# ---- deciding a hold -------------------------------------------------------------------------


@router.post("/orders/{order_id}/holds/{hold_id}", response_model=None)
async def decide(
    order_id: str,
    hold_id: str,
    request: Request,
    session: ConsoleDep,
    client: TemporalClientDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> HTMLResponse | RedirectResponse:
    """Release or reject one hold through the API's own path (the `resolve_hold` Update),
    then back to where the form was (303), or that page again with the refusal."""
    if session is None:
        return to_sign_in(request)
    form = await read_form(request)
    if cross_site(request) or form is None:
        return refused(request, "That form was not sent from the console: nothing was done.")
    if not (ORDER_ID.fullmatch(order_id) and HOLD_ID.fullmatch(hold_id)):
        return refused(request, "There is no such hold.", 404)
    if not session.accepts(decision_purpose(order_id, hold_id), field(form, "csrf")):
        return refused(
            request, "That form is stale or not from this session: reload the page and decide."
        )
    back: Literal["queue", "order"] = "order" if field(form, "back") == "order" else "queue"
    # The queue's filter, kept through the decision: the operator goes on where they were.
    only = field(form, "customer_id")
    only = only if CUSTOMER_ID.fullmatch(only) else ""

    async def again(problem: str, status_code: int) -> HTMLResponse:
        if back == "order":
            return await order_page_again(
                request, session, client, engine, settings, order_id, problem, status_code
            )
        return await _queue_page(
            request,
            session,
            engine,
            customer_id=only,
            problem=f"{order_id}: {problem}",
            status_code=status_code,
        )

    key = field(form, "key")
    if not IDEMPOTENCY_KEY.fullmatch(key):
        return await again("That form is incomplete: reload the page and decide.", 400)
    choice, reason = field(form, "decision"), field(form, "reason")
    try:
        if choice == "release":
            released = HoldRelease(reason=reason or None)
            decision = HoldDecision(
                hold_id=hold_id, resolution=HoldResolution.RELEASED, reason=released.reason
            )
        elif choice == "reject":
            rejected = HoldRejection(reason=reason)
            decision = HoldDecision(
                hold_id=hold_id, resolution=HoldResolution.REJECTED, reason=rejected.reason
            )
        else:
            return await again("Choose Release or Reject.", 422)
    except ValidationError as err:
        if not reason:
            return await again("Give a reason to reject: it goes on the order's timeline.", 422)
        return await again(f"The reason {field_errors(err.errors())[0].reason}.", 422)

    caller = Caller(client, engine, settings, session.principal, Response())
    try:
        answer = await hold_routes.decide(caller, order_id, decision, key)
    except ApiProblem as err:  # refused (409), no such hold (404), not accepted (503), ...
        return await again(err.detail, err.status)
    headers = answer.headers if isinstance(answer, JSONResponse) else caller.response.headers
    if "Idempotent-Replayed" in headers:
        outcome = "replayed"
    elif isinstance(answer, JSONResponse):  # 202: accepted, still running past UPDATE_WAIT
        outcome = "pending"
    else:
        outcome = decision.resolution.value
    log.info("console: %s %s %s on %s", session.principal.name, outcome, hold_id, order_id)
    if back == "order":
        target, query = f"{PREFIX}/orders/{order_id}", {}
    else:
        target, query = PREFIX, {"customer_id": only} if only else {}
    return redirect(f"{target}?{urlencode({**query, 'decided': order_id, 'outcome': outcome})}")
