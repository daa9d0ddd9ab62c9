"""The customer's order-tracking page, `/track/{order_id}?exp=...&sig=...`, linked from every
order email, and its return form.

The signed link is the credential (activities.tracking_links): a wrong, tampered or expired
link is the same plain 404 page as an order that does not exist, so a guessed id learns
nothing. What the page shows comes from the read model, as GET /orders/{id} does; a return
goes through the same `request_return` Update as POST /orders/{id}/returns, with an
Idempotency-Key the page made when it rendered the form (a resubmitted form returns once) and
a CSRF token bound to the order.
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from anyio import to_thread
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from activities.downloads import DownloadLinks
from activities.notifications import downloads_sent_at
from activities.tracking_links import TrackingLinks
from api.auth import Principal, Role
from api.deps import EngineDep, SettingsDep, TemporalClientDep
from api.order_calls import read_model_view
from api.order_updates import Caller, order_update
from api.pages import progress
from api.pages.csrf import new_token, token_valid
from api.pages.rendering import not_found_page, render
from api.problems import ApiProblem
from api.routes.customer_service import RETURN_REFUSED
from database import read_only
from models.orders import (
    OrderView,
    ReturnReason,
    ReturnRequest,
    ReturnResolution,
    ReturnView,
)
from models.tables import RevokedDownload
from models.wire import UPDATE_REQUEST_RETURN
from settings import Settings
from workflows import rules

router = APIRouter(prefix="/track", tags=["pages"], include_in_schema=False)

# Whose Idempotency-Keys the page's forms claim: the page's own, apart from any API client's.
PAGE_PRINCIPAL = Principal(name="tracking-page", role=Role.CLIENT)
CSRF_PURPOSE = "return"
OrderIdPath = Annotated[str, Path(max_length=100)]
REASONS = {
    ReturnReason.DAMAGED: "It arrived damaged",
    ReturnReason.WRONG_ITEM: "It is not what I ordered",
    ReturnReason.NOT_AS_DESCRIBED: "It is not as described",
    ReturnReason.CHANGED_MIND: "I changed my mind",
    ReturnReason.OTHER: "Another reason",
}


def _links(settings: Settings) -> TrackingLinks:
    return TrackingLinks(
        settings.public_base_url, settings.tracking_secret, settings.tracking_link_ttl
    )


def _signed(settings: Settings, order_id: str, exp: str | None, sig: str | None) -> bool:
    if exp is None or sig is None or not exp.isdigit() or len(exp) > 12:
        return False
    return _links(settings).valid(order_id, int(exp), sig, datetime.now(UTC))


def _revoked(engine: Engine, order_id: str) -> set[str]:
    with Session(read_only(engine)) as session:
        rows = session.exec(
            select(RevokedDownload.sku).where(col(RevokedDownload.order_id) == order_id)
        )
        return set(rows)


def _page_context(
    settings: Settings, view: OrderView, revoked: set[str], exp: str, sig: str
) -> dict[str, object]:
    now = datetime.now(UTC)
    downloads = []
    if any(entry.event == "digital_delivery_sent" for entry in view.timeline):
        links = DownloadLinks(
            settings.public_base_url, settings.download_secret, ttl=settings.download_link_ttl
        )
        issued = downloads_sent_at(view)
        for line in view.lines:
            if line.digital and line.sku not in revoked:
                expires = datetime.fromtimestamp(links.expires(issued), UTC)
                if now < expires:
                    downloads.append(
                        {
                            "name": line.name,
                            "url": links.url(view.order_id, line.sku, issued_at=issued),
                            "expires": expires,
                        }
                    )
    window_open = view.return_window_ends_at is not None and now < view.return_window_ends_at
    returnable = [
        {"line": line, "most": most}
        for line in view.lines
        if (most := rules.returnable(line.sku, view.shipments, view.lines, view.returns)) > 0
    ]
    return {
        "order": view,
        "steps": progress.steps(view),
        "headline": progress.headline(view),
        "stopped": view.status in progress.STOPPED,
        "parcels": list(view.shipments),
        "parcel_state": progress.parcel_state,
        "downloads": downloads,
        "window_open": window_open and bool(returnable),
        "returnable": returnable,
        "reasons": REASONS,
        "resolutions": list(ReturnResolution),
        "exp": exp,
        "sig": sig,
        "csrf": new_token(settings.tracking_secret, CSRF_PURPOSE, view.order_id),
        "form_key": uuid.uuid4().hex,
        "return_window": progress.duration(settings.return_window),
    }


@router.get("/{order_id}", response_class=HTMLResponse)
async def tracking_page(
    order_id: OrderIdPath,
    request: Request,
    settings: SettingsDep,
    engine: EngineDep,
    exp: str | None = None,
    sig: str | None = None,
    returned: str | None = None,
) -> HTMLResponse:
    if not _signed(settings, order_id, exp, sig):
        return not_found_page(request)
    view = await to_thread.run_sync(read_model_view, engine, order_id)
    if view is None:
        return not_found_page(request)
    revoked = await to_thread.run_sync(_revoked, engine, order_id)
    assert exp is not None and sig is not None
    context = _page_context(settings, view, revoked, exp, sig)
    if returned is not None:
        context["notice"] = (
            "Your return is booked: the label is in your email."
            if returned != "pending"
            else "We have your return request; it is being booked and the label will follow."
        )
    return render(request, "tracking.html", context)


@router.post("/{order_id}/returns", response_class=HTMLResponse, response_model=None)
async def request_return(
    order_id: OrderIdPath,
    request: Request,
    settings: SettingsDep,
    engine: EngineDep,
    client: TemporalClientDep,
) -> Response:
    form = await request.form()
    exp, sig = str(form.get("exp") or ""), str(form.get("sig") or "")
    if not _signed(settings, order_id, exp, sig):
        return not_found_page(request)
    if not token_valid(
        settings.tracking_secret, CSRF_PURPOSE, order_id, str(form.get("csrf") or "")
    ):
        return await _again(
            request, settings, engine, order_id, exp, sig,
            "This form has expired. Please check your choices and send it again.", 403,
        )  # fmt: skip
    lines = [
        {"sku": str(name).removeprefix("qty-"), "quantity": int(str(value))}
        for name, value in form.items()
        if str(name).startswith("qty-") and str(value).isdigit() and int(str(value)) > 0
    ]
    try:
        wanted = ReturnRequest.model_validate(
            {
                "lines": lines,
                "reason": form.get("reason"),
                "resolution": form.get("resolution") or ReturnResolution.REFUND,
            }
        )
    except ValidationError:
        message = "Choose how many of which item to return, and why."
        return await _again(request, settings, engine, order_id, exp, sig, message, 422)
    key = str(form.get("key") or "")
    caller = Caller(client, engine, settings, PAGE_PRINCIPAL, Response())
    try:
        answer = await order_update(
            caller,
            order_id,
            "returns",
            UPDATE_REQUEST_RETURN,
            wanted,
            ReturnView,
            refusal=RETURN_REFUSED,
            key=key if key.isalnum() and len(key) <= 64 else None,
        )
    except ApiProblem as problem:
        # A key already used for other choices: the customer changed the form after an error.
        message = (
            "Please check your choices and send the form again."
            if problem.kind == "idempotency-key-reused"
            else problem.detail
        )
        return await _again(request, settings, engine, order_id, exp, sig, message, problem.status)
    outcome = "pending" if isinstance(answer, JSONResponse) else answer.return_id
    query = urlencode({"exp": exp, "sig": sig, "returned": outcome})
    return RedirectResponse(f"/track/{order_id}?{query}#returns", status_code=303)


async def _again(
    request: Request,
    settings: Settings,
    engine: Engine,
    order_id: str,
    exp: str,
    sig: str,
    error: str,
    status: int,
) -> HTMLResponse:
    """The page once more, with what went wrong above the form."""
    view = await to_thread.run_sync(read_model_view, engine, order_id)
    if view is None:
        return not_found_page(request)
    revoked = await to_thread.run_sync(_revoked, engine, order_id)
    context = _page_context(settings, view, revoked, exp, sig)
    context["error"] = error
    return render(request, "tracking.html", context, status_code=status)
