"""Finding orders, an order's page, and the latest reconciliation report."""

from typing import Any
from urllib.parse import quote, urlencode

from anyio import to_thread
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client

from api.auth import Principal
from api.deps import EngineDep, SettingsDep, TemporalClientDep
from api.order_calls import load_order
from api.pages.console.common import (
    CUSTOMER_ID,
    ORDER_ID,
    PREFIX,
    QUEUED_HOLDS,
    SEARCH_PAGE_SIZE,
    ConsoleDep,
    ConsoleSession,
    decision_forms,
    notice,
    page,
    redirect,
    router,
    to_sign_in,
)
from api.problems import ApiProblem
from api.routes.orders import find_orders
from api.routes.reconciliation import latest_finished_run, report
from database import read_only
from models.orders import OrderStatus
from models.reconcile import ReconciliationReport
from models.wire import order_workflow_id
from settings import Settings

# ---- search ----------------------------------------------------------------------------------


@router.get("/orders", response_model=None)
async def search(
    request: Request,
    session: ConsoleDep,
    engine: EngineDep,
    order_id: str = "",
    customer_id: str = "",
    status: str = "",
    cursor: str = "",
) -> HTMLResponse | RedirectResponse:
    """An order by its id (straight to its page), or orders by customer and status, newest
    first; with neither, the latest orders."""
    if session is None:
        return to_sign_in(request)
    order_id, customer_id = order_id.strip(), customer_id.strip()
    if order_id and ORDER_ID.fullmatch(order_id):
        return redirect(f"{PREFIX}/orders/{order_id}")
    problem, status_code = None, 200
    if order_id:
        problem = "An order id is letters, digits, _ and -, as in ord_3f2a9c1d7e4b."
    elif customer_id and not CUSTOMER_ID.fullmatch(customer_id):
        problem = "A customer id is letters, digits, _ and -, as in cus_ada."
    elif status and status not in {s.value for s in OrderStatus}:
        problem = "Choose a status from the list."
    rows: list[Any] = []
    next_cursor = None
    if problem is None:
        try:
            rows, next_cursor = await to_thread.run_sync(
                _search,
                engine,
                session.principal,
                customer_id or None,
                OrderStatus(status) if status else None,
                cursor or None,
            )
        except ApiProblem as err:  # a cursor we did not make
            problem = err.detail
    if problem is not None:
        status_code = 422
    next_page = None
    if next_cursor is not None:
        query = {"customer_id": customer_id, "status": status, "cursor": next_cursor}
        next_page = f"{PREFIX}/orders?{urlencode({k: v for k, v in query.items() if v})}"
    return page(
        request,
        session,
        "search.html",
        {
            "rows": rows,
            "customer_id": customer_id,
            "status": status,
            "order_id": order_id,
            "statuses": list(OrderStatus),
            "filtered": bool(customer_id or status),
            "next_page": next_page,
            "problem": problem,
        },
        status_code=status_code,
    )


def _search(
    engine: Engine,
    principal: Principal,
    customer_id: str | None,
    status: OrderStatus | None,
    cursor: str | None,
) -> tuple[list[Any], str | None]:
    with Session(read_only(engine)) as db:
        return find_orders(
            db,
            principal,
            customer_id=customer_id,
            status=status,
            limit=SEARCH_PAGE_SIZE,
            cursor=cursor,
        )


# ---- an order's page -------------------------------------------------------------------------


def temporal_ui_link(settings: Settings, order_id: str) -> str:
    """The order's workflow in the Temporal UI: its whole history, event by event."""
    ui = settings.temporal_ui_url.rstrip("/")
    namespace = quote(settings.temporal_namespace, safe="")
    return f"{ui}/namespaces/{namespace}/workflows/{quote(order_workflow_id(order_id), safe='')}"


async def order_page_again(
    request: Request,
    session: ConsoleSession,
    client: Client,
    engine: Engine,
    settings: Settings,
    order_id: str,
    problem: str | None = None,
    status_code: int = 200,
    notice: str | None = None,
) -> HTMLResponse:
    if not ORDER_ID.fullmatch(order_id):
        return page(request, session, "no_order.html", {"order_id": None}, 404)
    try:
        view = await load_order(client, engine, order_id)  # GET /orders/{id}'s own read
    except ApiProblem as err:
        if err.status == 404:
            return page(request, session, "no_order.html", {"order_id": order_id}, 404)
        return page(
            request,
            session,
            "no_order.html",
            {"order_id": order_id, "problem": err.detail},
            err.status,
        )
    waiting = [h for h in view.holds if h.resolution is None]
    open_holds = [h for h in waiting if h.code in QUEUED_HOLDS]
    return page(
        request,
        session,
        "order.html",
        {
            "view": view,
            "open_holds": open_holds,
            "decided_holds": [h for h in view.holds if h.resolution is not None],
            "waiting_holds": [h for h in waiting if h.code not in QUEUED_HOLDS],  # backorders
            "forms": decision_forms(session, view, open_holds),
            "currency": view.totals.currency if view.totals else "USD",
            "history": temporal_ui_link(settings, order_id),
            "workflow_id": order_workflow_id(order_id),
            "notice": notice,
            "problem": problem,
        },
        status_code=status_code,
    )


@router.get("/orders/{order_id}", response_model=None)
async def order_page(
    order_id: str,
    request: Request,
    session: ConsoleDep,
    client: TemporalClientDep,
    engine: EngineDep,
    settings: SettingsDep,
    decided: str | None = None,
    outcome: str | None = None,
) -> HTMLResponse | RedirectResponse:
    """Everything about one order: holds, timeline, payments, parcels, its Temporal history."""
    if session is None:
        return to_sign_in(request)
    return await order_page_again(
        request,
        session,
        client,
        engine,
        settings,
        order_id,
        notice=notice(decided, outcome) if decided == order_id else None,
    )


# ---- the reconciliation ----------------------------------------------------------------------


def _latest_report(engine: Engine) -> ReconciliationReport | None:
    with Session(read_only(engine)) as db:
        run = latest_finished_run(db)
        return report(db, run) if run is not None else None


@router.get("/reconciliation", response_model=None)
async def reconciliation(
    request: Request, session: ConsoleDep, engine: EngineDep
) -> HTMLResponse | RedirectResponse:
    """GET /reconciliation/reports/latest, for people."""
    if session is None:
        return to_sign_in(request)
    latest = await to_thread.run_sync(_latest_report, engine)
    return page(request, session, "reconciliation.html", {"report": latest})
