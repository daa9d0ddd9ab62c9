"""The codec server: lets an operator read encrypted order payloads in the Temporal UI and CLI.

Temporal's remote codec protocol: `POST /codec/decode` and `POST /codec/encode` take and return
`{"payloads": [{"metadata": {name: base64}, "data": base64}]}` (Payloads in protobuf JSON) and
run them through the same `EncryptionCodec` the worker and the API use (identity when
ENCRYPTION_KEY is unset). The Temporal UI calls it from the browser with an `X-Namespace`
header, so /codec answers CORS for the UI's origins (CODEC_CORS_ORIGINS; see api.middleware).

Only operators may use it, by either of:
- `Authorization: Bearer <operator key>`: the CLI
  (`temporal workflow show --codec-endpoint http://localhost:8000/codec --codec-auth
  "Bearer <key>"`), scripts, or a proxy in front of the UI that adds the header;
- a codec session cookie, for the Temporal UI in a browser: sign in once at `GET /codec/session`
  with an operator key, then in the UI's codec settings choose the browser-level setting, give
  it this endpoint and turn on "Include cross-origin credentials" (the UI sends no cookie to
  the cluster-level endpoint). The cookie is HttpOnly, SameSite=Strict, limited to /codec and
  lasts 8 hours. (The
  UI's "Pass access token" sends the UI's own OIDC login token, and only to https endpoints:
  it can carry an operator key only where the UI's login issues such tokens.)
"""

import html
import logging
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import HTMLResponse
from google.protobuf import json_format
from pydantic import BaseModel, Field, StringConstraints
from starlette.types import Scope
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from api.auth import (
    CODEC_SESSION_COOKIE,
    CODEC_SESSION_TTL,
    Principal,
    bearer_token,
    codec_session_principal,
    forbidden,
    get_keyring,
    new_codec_session,
    unauthorized,
)
from api.deps import SettingsDep
from api.problems import ApiProblem, auth_responses, invalid, problem_responses
from models.http import BASE64, FieldError

log = logging.getLogger("ordermill.api.codec")

PREFIX = "/codec"
# A Temporal payload may be 2 MiB and base64 grows it by a third: so much only for operators
# (api.main lets a request that presents an operator's credential send it; others get 64 KiB).
MAX_CODEC_BODY_BYTES = 4 * 1024 * 1024
CODEC_PATHS = (f"{PREFIX}/encode", f"{PREFIX}/decode")
MAX_PAYLOADS = 1000
MAX_SIGN_IN_FIELDS = 10


Base64 = Annotated[str, StringConstraints(pattern=BASE64)]


class CodecPayload(BaseModel):
    metadata: dict[str, Base64] = Field(default_factory=dict, description="Each value in base64")
    data: Base64 = Field(default="", description="base64")


class CodecPayloads(BaseModel):
    """Temporal's `Payloads` message in protobuf JSON."""

    payloads: list[CodecPayload] = Field(max_length=MAX_PAYLOADS)


def get_codec(request: Request) -> PayloadCodec | None:
    codec: PayloadCodec | None = request.app.state.codec
    return codec


async def codec_operator(request: Request) -> Principal:
    """An operator, by bearer key or by a codec session cookie."""
    keyring = get_keyring(request)
    token = bearer_token(request)
    if token is not None:
        principal = keyring.authenticate(token)
        if principal is None:
            raise unauthorized("the API key is not valid", invalid_token=True)
    else:
        cookie = request.cookies.get(CODEC_SESSION_COOKIE)
        principal = codec_session_principal(keyring, cookie) if cookie else None
        if principal is None:
            raise unauthorized(
                "the codec needs an operator key: send `Authorization: Bearer <key>`, or sign "
                f"in at {PREFIX}/session for the Temporal UI"
            )
    if not principal.is_operator:
        raise forbidden("only an operator key may use the codec")
    request.state.principal = principal
    return principal


def presents_operator(scope: Scope) -> bool:
    """Whether a request's headers carry an operator's key or codec session, read before its
    body: only such a request may send the codec's large bodies."""
    try:
        return _is_operator(Request(scope))
    except ApiProblem:  # a malformed Authorization header: certainly not an operator
        return False


def _is_operator(request: Request) -> bool:
    keyring = get_keyring(request)
    token = bearer_token(request)
    if token is not None:
        principal = keyring.authenticate(token)
    else:
        cookie = request.cookies.get(CODEC_SESSION_COOKIE)
        principal = codec_session_principal(keyring, cookie) if cookie else None
    return principal is not None and principal.is_operator


router = APIRouter(prefix=PREFIX, tags=["codec"])
protected = APIRouter(
    dependencies=[Depends(codec_operator)], responses=auth_responses(operator=True)
)

Namespace = Annotated[
    str | None,
    Header(alias="X-Namespace", max_length=255, description="The Temporal UI sends this"),
]


def _check_namespace(namespace: str | None, served: str) -> None:
    if namespace is not None and namespace != served:
        raise invalid(
            [FieldError(field="X-Namespace", reason=f"this codec serves namespace {served}")]
        )


def _to_proto(body: CodecPayloads) -> list[Payload]:
    try:
        return list(json_format.ParseDict(body.model_dump(), Payloads()).payloads)
    except json_format.ParseError:
        raise invalid(
            [FieldError(field="payloads", reason="metadata values and data must be base64")]
        ) from None


def _to_json(payloads: list[Payload]) -> CodecPayloads:
    return CodecPayloads.model_validate(
        json_format.MessageToDict(Payloads(payloads=payloads)) or {"payloads": []}
    )


@protected.post(
    "/encode",
    response_model=CodecPayloads,
    summary="Encrypt payloads (Temporal remote codec)",
    responses=problem_responses(413, 422),
)
async def encode(
    body: CodecPayloads, request: Request, settings: SettingsDep, namespace: Namespace = None
) -> CodecPayloads:
    _check_namespace(namespace, settings.temporal_namespace)
    payloads = _to_proto(body)
    codec = get_codec(request)
    return _to_json(list(await codec.encode(payloads)) if codec else payloads)


@protected.post(
    "/decode",
    response_model=CodecPayloads,
    summary="Decrypt payloads (Temporal remote codec)",
    responses=problem_responses(413, 422),
)
async def decode(
    body: CodecPayloads, request: Request, settings: SettingsDep, namespace: Namespace = None
) -> CodecPayloads:
    _check_namespace(namespace, settings.temporal_namespace)
    payloads = _to_proto(body)
    codec = get_codec(request)
    if codec is None:
        return _to_json(payloads)
    opened: list[Payload] = []
    for index, payload in enumerate(payloads):
        try:
            opened.extend(await codec.decode([payload]))
        except Exception as err:  # unknown key id, tampered or truncated: say which, not how
            log.warning("codec: payloads[%d] could not be decrypted: %r", index, err)
            raise invalid(
                [
                    FieldError(
                        field=f"payloads[{index}]",
                        reason="cannot be decrypted with this server's keys",
                    )
                ]
            ) from None
    return _to_json(opened)


# ---- browser sign-in for the Temporal UI -----------------------------------------------------

_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_PAGE_HEADERS)


def _sign_in_form(message: str = "") -> str:
    note = f"<p><strong>{html.escape(message)}</strong></p>" if message else ""
    return (
        f"{note}<p>Sign this browser in with an operator API key to let the Temporal UI decrypt "
        "order payloads through this codec server.</p>"
        f"<form method='post' action='{PREFIX}/session'>"
        "<label>Operator API key <input type='password' name='key' autocomplete='off' "
        "required></label> <button type='submit'>Sign in</button></form>"
    )


@router.get("/session", include_in_schema=False)
async def session_form() -> HTMLResponse:
    return _page("ordermill codec", _sign_in_form())


def _ui_steps(endpoint: str) -> str:
    """The Temporal UI sends cookies only to a browser-level codec endpoint, so say exactly how."""
    return (
        "<p>Now, in the Temporal UI (open it at the same host name as this page, e.g. "
        "<code>localhost</code>):</p><ol>"
        "<li>click the codec server icon (the glasses, top right);</li>"
        "<li>choose <em>Use my browser setting and ignore Cluster-level setting</em>;</li>"
        f"<li>set the codec server browser endpoint to <code>{html.escape(endpoint)}</code>;</li>"
        "<li>turn on <em>Include cross-origin credentials</em> and apply;</li>"
        "<li>reload the order's page: its payloads show decrypted.</li></ol>"
    )


@router.post("/session", include_in_schema=False)
async def start_session(request: Request) -> HTMLResponse:
    """Sets the codec session cookie for an operator key sent by the form (or as a bearer)."""
    keyring = get_keyring(request)
    try:
        token = bearer_token(request)
    except ApiProblem:
        return _page("ordermill codec", _sign_in_form("That is not an operator key."), 401)
    if token is None:
        body = (await request.body()).decode("utf-8", "replace")
        try:
            form = parse_qs(body, max_num_fields=MAX_SIGN_IN_FIELDS)
        except ValueError:  # more fields than the form has: not our form
            return _page("ordermill codec", _sign_in_form("That was not the sign-in form."), 400)
        token = (form.get("key") or [""])[0].strip()
    principal = keyring.authenticate(token) if token else None
    if principal is None or not principal.is_operator:
        return _page("ordermill codec", _sign_in_form("That is not an operator key."), 401)
    response = _page(
        "ordermill codec",
        f"<p>Signed in as {html.escape(principal.name)} for "
        f"{int(CODEC_SESSION_TTL.total_seconds() // 3600)} hours.</p>"
        + _ui_steps(str(request.base_url).rstrip("/") + PREFIX),
    )
    response.set_cookie(
        CODEC_SESSION_COOKIE,
        new_codec_session(keyring, principal),
        max_age=int(CODEC_SESSION_TTL.total_seconds()),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


router.include_router(protected)
