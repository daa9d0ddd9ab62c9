"""The operator console at /console: the review queue and its decisions, search, an order's
page, and the latest reconciliation report. Server-rendered; every form works without
JavaScript.

Signing in: an operator key posted to /console/sign-in sets the `ordermill_console` cookie
(api.auth.new_console_session: signed with the operator's own key, so it dies with the key),
HttpOnly, SameSite=Strict, scoped to /console, Secure over https, for 8 hours. Only the cookie
opens the console; an `Authorization` header opens nothing here. Without a valid session a page
answers 303 to the sign-in page. A client key is refused there with 403, an unknown key 401,
and neither sets a cookie.

Forms: each carries a CSRF token (api.pages.csrf) bound to the session cookie and to what the
form acts on (one hold of one order, or signing out), under a secret derived from the
operator's key: SameSite=Strict is the first line, the token the second. A post a browser
marks as coming from another site (`Sec-Fetch-Site`) is refused before either, the sign-in
form's included. A refused token answers 403 and changes nothing.

Everything shown or done goes through the API's own code: GET /orders's query
(api.routes.orders.find_orders), `load_order`, the hold decision's Update with its
Idempotency-Key and refusals (api.routes.holds.decide), the reconciliation's report.
"""

import logging
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from anyio import to_thread
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from temporalio.client import Client

from api import idempotency
from api.auth import (
    CONSOLE_SESSION_COOKIE,
    CONSOLE_SESSION_TTL,
    Keyring,
    Principal,
    console_session_principal,
    get_keyring,
    new_console_session,
)
from api.deps import EngineDep, SettingsDep, TemporalClientDep
from api.order_calls import load_order
from api.order_updates import Caller
from api.pages import csrf
from api.pages.rendering import render
from api.problems import ApiProblem, field_errors
from api.routes import holds as hold_routes
from api.routes.orders import find_orders
from api.routes.reconciliation import latest_finished_run, report
from database import read_only
from models.holds import HoldCode, HoldDecision, HoldResolution, HoldView
from models.http import CUSTOMER_ID_PATTERN, HoldRejection, HoldRelease
from models.orders import OrderStatus, OrderView
from models.reconcile import ReconciliationReport
from models.wire import order_workflow_id
from settings import Settings

log = logging.getLogger("ordermill.api.console")

PREFIX = "/console"
SIGN_IN = f"{PREFIX}/sign-in"
QUEUE_PAGE_SIZE = 20
SEARCH_PAGE_SIZE = 25
# Every hold an operator decides; a backorder is released by stock arriving, never by hand.
QUEUED_HOLDS = tuple(code for code in HoldCode if code is not HoldCode.BACKORDER)
_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
_HOLD_ID = re.compile(r"[a-z_]{1,40}(-[0-9]{1,4})?")
_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)
_IDEMPOTENCY_KEY = re.compile(idempotency.KEY_PATTERN)
_CSRF_CONTEXT = b"ordermill console csrf\n"
# The most fields any console form has, with room: anything beyond is not our form.
_MAX_FORM_FIELDS = 10
# What a decision's redirect may say, by code: a notice's words never travel in the URL.
OUTCOMES = {
    "released": "Released: the held step runs again.",
    "rejected": "Rejected: the held step is given up, as the order's stage allows.",
    "pending": "Accepted: the decision is still taking effect; reload to see it.",
    "replayed": "That form was already sent: this is its first outcome, not a second decision.",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in operator, and the cookie their forms' tokens are bound to."""

    principal: Principal
    cookie: str
    secret: str

    def token(self, purpose: str) -> str:
        return csrf.new_token(self.secret, purpose, self.cookie)

    def accepts(self, purpose: str, token: str | None) -> bool:
        return csrf.token_valid(self.secret, purpose, self.cookie, token)


def open_session(keyring: Keyring, cookie: str) -> ConsoleSession | None:
    """The operator a console cookie stands for, if it is valid and theirs."""
    principal = console_session_principal(keyring, cookie)
    if principal is None:
        return None
    # Keyed by the operator's own key: nothing a browser ever holds can mint a token.
    secret = keyring.sign(principal, _CSRF_CONTEXT)[0].hex()
    return ConsoleSession(principal, cookie, secret)


async def console_session(request: Request) -> ConsoleSession | None:
    cookie = request.cookies.get(CONSOLE_SESSION_COOKIE)
    return open_session(get_keyring(request), cookie) if cookie else None


ConsoleDep = Annotated[ConsoleSession | None, Depends(console_session)]


# ---- answers ---------------------------------------------------------------------------------


def _redirect(url: str) -> RedirectResponse:
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return RedirectResponse(url, status_code=303, headers=headers)


def _to_sign_in(request: Request) -> RedirectResponse:
    ended = bool(request.cookies.get(CONSOLE_SESSION_COOKIE))  # one was sent, and is no more
    return _redirect(f"{SIGN_IN}?session=ended" if ended else SIGN_IN)


def _page(
    request: Request,
    session: ConsoleSession,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        f"console/{template}",
        {
            "operator": session.principal.name,
            "sign_out_token": session.token("sign-out"),
            **context,
        },
        status_code=status_code,
    )


def _cross_site(request: Request) -> bool:
    """A browser's own word that another site (or a sibling subdomain) sent this post."""
    return request.headers.get("sec-fetch-site") in ("cross-site", "same-site")


def _refused(request: Request, message: str, status_code: int = 403) -> HTMLResponse:
    return render(request, "console/refused.html", {"message": message}, status_code=status_code)


async def _form(request: Request) -> FormData | None:
    """The posted form, or None for a body that is not one of ours."""
    try:
        return await request.form(max_files=0, max_fields=_MAX_FORM_FIELDS)
    except (HTTPException, ValueError, UnicodeDecodeError):
        return None


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _notice(order_id: str | None, outcome: str | None) -> str | None:
    """A decision's outcome, from the redirect's codes."""
    if order_id is None or outcome not in OUTCOMES or not _ORDER_ID.fullmatch(order_id):
        return None
    return f"{order_id}: {OUTCOMES[outcome]}"


# ---- signing in and out ----------------------------------------------------------------------


@router.get("/sign-in", response_model=None)
async def sign_in_page(request: Request, session: ConsoleDep) -> HTMLResponse | RedirectResponse:
    if session is not None:
        return _redirect(PREFIX)
    message = None
    if request.query_params.get("session") == "ended":
        message = "Your session has ended: sign in again."
    signed_out = request.query_params.get("signed_out") == "true"
    return render(request, "console/sign_in.html", {"message": message, "signed_out": signed_out})


@router.post("/sign-in", response_model=None)
async def sign_in(request: Request, settings: SettingsDep) -> HTMLResponse | RedirectResponse:
    if _cross_site(request):
        return _refused(request, "Sign in from the console's own page.")
    form = await _form(request)
    if form is None:
        return _refused(request, "That was not the sign-in form.", 400)
    key = _field(form, "key")
    principal = get_keyring(request).authenticate(key) if key else None
    if principal is None or not principal.is_operator:
        # A client key is a key, just not one for this: 403. Anything else is no key: 401.
        status = 401 if principal is None else 403
        message = (
            "That is not a valid API key."
            if principal is None
            else "That is a client key: the console is for operators only."
        )
        return render(request, "console/sign_in.html", {"message": message}, status_code=status)
    response = _redirect(PREFIX)
    response.set_cookie(
        CONSOLE_SESSION_COOKIE,
        new_console_session(get_keyring(request), principal),
        max_age=int(CONSOLE_SESSION_TTL.total_seconds()),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        # Behind a proxy that ends TLS the request itself is http: the public URL says https.
        secure=request.url.scheme == "https" or settings.public_base_url.startswith("https:"),
    )
    log.info("console: %s signed in", principal.name)
    return response


@router.post("/sign-out", response_model=None)
async def sign_out(request: Request, session: ConsoleDep) -> HTMLResponse | RedirectResponse:
    if session is None:
        return _to_sign_in(request)
    form = await _form(request)
    token = _field(form, "csrf") if form is not None else ""
    if _cross_site(request) or not session.accepts("sign-out", token):
        return _refused(request, "That sign-out form is stale or not ours: nothing was done.")
    response = _redirect(f"{SIGN_IN}?signed_out=true")
    response.delete_cookie(CONSOLE_SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


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


def _decision_forms(
    session: ConsoleSession, view: OrderView, holds: list[HoldView]
) -> dict[str, dict[str, str]]:
    """Per hold: its token and a fresh Idempotency-Key, so a form sent twice decides once."""
    return {
        hold.hold_id: {
            "csrf": session.token(_decision_purpose(view.order_id, hold.hold_id)),
            "key": str(uuid.uuid4()),
        }
        for hold in holds
    }


def _decision_purpose(order_id: str, hold_id: str) -> str:
    return f"hold {order_id} {hold_id}"


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
    if customer_id and not _CUSTOMER_ID.fullmatch(customer_id):
        problem, status_code = "A customer id is letters, digits, _ and -.", 422
        customer_id = cursor = ""
    try:
        queued, next_cursor = await to_thread.run_sync(
            _queue, engine, session.principal, customer_id or None, cursor or None
        )
    except ApiProblem as err:  # a cursor we did not make
        queued, next_cursor = [], None
        problem, status_code = err.detail, err.status
    forms = {q.view.order_id: _decision_forms(session, q.view, q.holds) for q in queued}
    only = {"customer_id": customer_id} if customer_id else {}
    next_page = None
    if next_cursor is not None:
        next_page = f"{PREFIX}?{urlencode({**only, 'cursor': next_cursor})}"
    return _page(
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
        return _to_sign_in(request)
    return await _queue_page(
        request,
        session,
        engine,
        customer_id=customer_id.strip(),
        cursor=cursor,
        notice=_notice(decided, outcome),
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
        return _to_sign_in(request)
    form = await _form(request)
    if _cross_site(request) or form is None:
        return _refused(request, "That form was not sent from the console: nothing was done.")
    if not (_ORDER_ID.fullmatch(order_id) and _HOLD_ID.fullmatch(hold_id)):
        return _refused(request, "There is no such hold.", 404)
    if not session.accepts(_decision_purpose(order_id, hold_id), _field(form, "csrf")):
        return _refused(
            request, "That form is stale or not from this session: reload the page and decide."
        )
    back: Literal["queue", "order"] = "order" if _field(form, "back") == "order" else "queue"
    # The queue's filter, kept through the decision: the operator goes on where they were.
    only = _field(form, "customer_id")
    only = only if _CUSTOMER_ID.fullmatch(only) else ""

    async def again(problem: str, status_code: int) -> HTMLResponse:
        if back == "order":
            return await _order_page(
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

    key = _field(form, "key")
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        return await again("That form is incomplete: reload the page and decide.", 400)
    choice, reason = _field(form, "decision"), _field(form, "reason")
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
    return _redirect(f"{target}?{urlencode({**query, 'decided': order_id, 'outcome': outcome})}")


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
        return _to_sign_in(request)
    order_id, customer_id = order_id.strip(), customer_id.strip()
    if order_id and _ORDER_ID.fullmatch(order_id):
        return _redirect(f"{PREFIX}/orders/{order_id}")
    problem, status_code = None, 200
    if order_id:
        problem = "An order id is letters, digits, _ and -, as in ord_3f2a9c1d7e4b."
    elif customer_id and not _CUSTOMER_ID.fullmatch(customer_id):
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
    return _page(
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


async def _order_page(
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
    if not _ORDER_ID.fullmatch(order_id):
        return _page(request, session, "no_order.html", {"order_id": None}, 404)
    try:
        view = await load_order(client, engine, order_id)  # GET /orders/{id}'s own read
    except ApiProblem as err:
        if err.status == 404:
            return _page(request, session, "no_order.html", {"order_id": order_id}, 404)
        return _page(
            request,
            session,
            "no_order.html",
            {"order_id": order_id, "problem": err.detail},
            err.status,
        )
    waiting = [h for h in view.holds if h.resolution is None]
    open_holds = [h for h in waiting if h.code in QUEUED_HOLDS]
    return _page(
        request,
        session,
        "order.html",
        {
            "view": view,
            "open_holds": open_holds,
            "decided_holds": [h for h in view.holds if h.resolution is not None],
            "waiting_holds": [h for h in waiting if h.code not in QUEUED_HOLDS],  # backorders
            "forms": _decision_forms(session, view, open_holds),
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
        return _to_sign_in(request)
    return await _order_page(
        request,
        session,
        client,
        engine,
        settings,
        order_id,
        notice=_notice(decided, outcome) if decided == order_id else None,
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
        return _to_sign_in(request)
    latest = await to_thread.run_sync(_latest_report, engine)
    return _page(request, session, "reconciliation.html", {"report": latest})
