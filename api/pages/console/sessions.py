"""Signing in to the console and out of it."""

import logging

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.auth import (
    CONSOLE_SESSION_COOKIE,
    CONSOLE_SESSION_TTL,
    get_keyring,
    new_console_session,
)
from api.deps import SettingsDep
from api.pages.console.common import (
    PREFIX,
    SIGN_IN,
    ConsoleDep,
    cross_site,
    field,
    read_form,
    redirect,
    refused,
    router,
    to_sign_in,
)
from api.pages.rendering import render

log = logging.getLogger("ordermill.api.console")

# ---- signing in and out ----------------------------------------------------------------------


@router.get("/sign-in", response_model=None)
async def sign_in_page(request: Request, session: ConsoleDep) -> HTMLResponse | RedirectResponse:
    if session is not None:
        return redirect(PREFIX)
    message = None
    if request.query_params.get("session") == "ended":
        message = "Your session has ended: sign in again."
    signed_out = request.query_params.get("signed_out") == "true"
    return render(request, "console/sign_in.html", {"message": message, "signed_out": signed_out})


@router.post("/sign-in", response_model=None)
async def sign_in(request: Request, settings: SettingsDep) -> HTMLResponse | RedirectResponse:
    if cross_site(request):
        return refused(request, "Sign in from the console's own page.")
    form = await read_form(request)
    if form is None:
        return refused(request, "That was not the sign-in form.", 400)
    key = field(form, "key")
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
    response = redirect(PREFIX)
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
        return to_sign_in(request)
    form = await read_form(request)
    token = field(form, "csrf") if form is not None else ""
    if cross_site(request) or not session.accepts("sign-out", token):
        return refused(request, "That sign-out form is stale or not ours: nothing was done.")
    response = redirect(f"{SIGN_IN}?signed_out=true")
    response.delete_cookie(CONSOLE_SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response
