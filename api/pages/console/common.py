"""What every console page shares: the session, its CSRF tokens, and how pages answer."""

import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from api import idempotency
from api.auth import (
    CONSOLE_SESSION_COOKIE,
    Keyring,
    Principal,
    console_session_principal,
    get_keyring,
)
from api.pages import csrf
from api.pages.rendering import render
from models.holds import HoldCode, HoldView
from models.http import CUSTOMER_ID_PATTERN
from models.orders import OrderView

PREFIX = "/console"
SIGN_IN = f"{PREFIX}/sign-in"
QUEUE_PAGE_SIZE = 20
SEARCH_PAGE_SIZE = 25
# Every hold an operator decides; a backorder is released by stock arriving, never by hand.
QUEUED_HOLDS = tuple(code for code in HoldCode if code is not HoldCode.BACKORDER)
ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
HOLD_ID = re.compile(r"[a-z_]{1,40}(-[0-9]{1,4})?")
CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)
IDEMPOTENCY_KEY = re.compile(idempotency.KEY_PATTERN)
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


def redirect(url: str) -> RedirectResponse:
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return RedirectResponse(url, status_code=303, headers=headers)


def to_sign_in(request: Request) -> RedirectResponse:
    ended = bool(request.cookies.get(CONSOLE_SESSION_COOKIE))  # one was sent, and is no more
    return redirect(f"{SIGN_IN}?session=ended" if ended else SIGN_IN)


def page(
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


def cross_site(request: Request) -> bool:
    """A browser's own word that another site (or a sibling subdomain) sent this post."""
    return request.headers.get("sec-fetch-site") in ("cross-site", "same-site")


def refused(request: Request, message: str, status_code: int = 403) -> HTMLResponse:
    return render(request, "console/refused.html", {"message": message}, status_code=status_code)


async def read_form(request: Request) -> FormData | None:
    """The posted form, or None for a body that is not one of ours."""
    try:
        return await request.form(max_files=0, max_fields=_MAX_FORM_FIELDS)
    except (HTTPException, ValueError, UnicodeDecodeError):
        return None


def field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def notice(order_id: str | None, outcome: str | None) -> str | None:
    """A decision's outcome, from the redirect's codes."""
    if order_id is None or outcome not in OUTCOMES or not ORDER_ID.fullmatch(order_id):
        return None
    return f"{order_id}: {OUTCOMES[outcome]}"


def decision_forms(
    session: ConsoleSession, view: OrderView, holds: list[HoldView]
) -> dict[str, dict[str, str]]:
    """Per hold: its token and a fresh Idempotency-Key, so a form sent twice decides once."""
    return {
        hold.hold_id: {
            "csrf": session.token(decision_purpose(view.order_id, hold.hold_id)),
            "key": str(uuid.uuid4()),
        }
        for hold in holds
    }


def decision_purpose(order_id: str, hold_id: str) -> str:
    return f"hold {order_id} {hold_id}"
