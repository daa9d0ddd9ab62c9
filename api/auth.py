"""API keys and roles: who is calling, and which orders they may touch.

Every request but the public ones (health, docs, signed download links, the HMAC-signed carrier
webhooks) carries `Authorization: Bearer <key>`. A key is one of API_KEYS and stands for a
principal: a name and a role.

- `client`: places orders and acts on the orders it placed, and only those. Another client's
  order answers 404, exactly as an unknown order does, so order ids leak nothing.
- `operator`: everything, including every client's orders, goodwill refunds and the codec.

Keys are kept as SHA-256 digests and a presented key is compared with every one of them by
`hmac.compare_digest`, so neither the answer nor its timing tells how close a guess was.
"""

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import EngineDep, TemporalClientDep
from api.order_calls import load_order
from api.problems import ApiProblem, not_found
from settings import ApiKeyEntry

log = logging.getLogger("ordermill.api.auth")

REALM = "ordermill"
# What an order id can look like (api.routes.orders.OrderId); anything else is no order at all.
_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


class Role(StrEnum):
    CLIENT = "client"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR


@dataclass(frozen=True)
class _Key:
    digest: bytes
    principal: Principal


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class Keyring:
    """The configured API keys, held as digests."""

    def __init__(self, entries: Iterable[ApiKeyEntry]) -> None:
        self._keys = [
            _Key(_digest(entry.key), Principal(entry.name, Role(entry.role))) for entry in entries
        ]

    def authenticate(self, presented: str) -> Principal | None:
        digest = _digest(presented)
        found: Principal | None = None
        for key in self._keys:  # no early exit: every key is compared, match or not
            if hmac.compare_digest(key.digest, digest):
                found = key.principal
        return found

    def sign(self, principal: Principal, message: bytes) -> list[bytes]:
        """MACs of `message` under each key of `principal` (codec sessions use these)."""
        return [
            hmac.new(key.digest, message, hashlib.sha256).digest()
            for key in self._keys
            if key.principal == principal
        ]

    def principal_named(self, name: str) -> Principal | None:
        return next((k.principal for k in self._keys if k.principal.name == name), None)


def get_keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


def unauthorized(detail: str, *, invalid_token: bool = False) -> ApiProblem:
    challenge = f'Bearer realm="{REALM}"'
    if invalid_token:
        challenge += ', error="invalid_token"'
    return ApiProblem(
        401,
        "unauthorized",
        detail,
        title="Authentication required",
        headers={"WWW-Authenticate": challenge},
    )


def forbidden(detail: str) -> ApiProblem:
    return ApiProblem(403, "forbidden", detail, title="Not allowed for this API key")


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("send your API key as `Authorization: Bearer <key>`", invalid_token=True)
    return token.strip()


# Only for the OpenAPI document (the docs' Authorize button); the header is read below.
_bearer_docs = HTTPBearer(
    auto_error=False, scheme_name="ApiKey", description="An API key from API_KEYS"
)


async def authenticate(
    request: Request,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_docs)],
) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise unauthorized("this needs an API key: send `Authorization: Bearer <key>`")
    principal = get_keyring(request).authenticate(token)
    if principal is None:
        raise unauthorized("the API key is not valid", invalid_token=True)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


async def require_operator(principal: PrincipalDep) -> Principal:
    if not principal.is_operator:
        raise forbidden("only an operator key may do this")
    return principal


OperatorDep = Annotated[Principal, Depends(require_operator)]


# ---- order ownership -------------------------------------------------------------------------


async def require_order_access(
    request: Request, principal: PrincipalDep, client: TemporalClientDep, engine: EngineDep
) -> None:
    """Router dependency: a client may only reach `/orders/{order_id}...` for its own orders.

    Reads the `order_id` path parameter, so it can guard a whole router; routes without one
    (placing and listing) only need the key. Someone else's order is the same 404 as none.
    """
    order_id = request.path_params.get("order_id")
    if order_id is None or principal.is_operator:
        return
    hidden = not_found("order", f"there is no order {order_id}")
    if not _ORDER_ID.fullmatch(order_id):
        raise hidden
    order = await load_order(client, engine, order_id)  # 404 or 503 problems as they are
    if order.placed_by is None or not hmac.compare_digest(order.placed_by, principal.name):
        raise hidden
    request.state.order = order  # GET /orders/{order_id} answers with it: one read, not two


OrderAccess = Depends(require_order_access)
Authenticated = Depends(authenticate)
OperatorOnly = Depends(require_operator)


# ---- browser sessions: the codec's and the console's -----------------------------------------

CODEC_SESSION_COOKIE = "ordermill_codec"
CODEC_SESSION_TTL = timedelta(hours=8)
_SESSION_CONTEXT = b"ordermill codec session\n"
CONSOLE_SESSION_COOKIE = "ordermill_console"
CONSOLE_SESSION_TTL = timedelta(hours=8)
# Its own context, so a codec cookie pasted into the console's (or back) is refused.
_CONSOLE_CONTEXT = b"ordermill console session\n"


def _new_session(
    keyring: Keyring, principal: Principal, context: bytes, ttl: timedelta, now: float | None
) -> str:
    """`name.expires.mac`, the MAC keyed by the operator's own key, so it dies with the key."""
    expires = int((time.time() if now is None else now) + ttl.total_seconds())
    message = context + f"{principal.name}\n{expires}".encode()
    return f"{principal.name}.{expires}.{keyring.sign(principal, message)[0].hex()}"


def _session_principal(
    keyring: Keyring, cookie: str, context: bytes, now: float | None
) -> Principal | None:
    parts = cookie.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isascii() or not parts[1].isdigit() or len(parts[1]) > 12:
        return None
    name, expires, mac_hex = parts[0], int(parts[1]), parts[2]
    if expires < (time.time() if now is None else now):
        return None
    principal = keyring.principal_named(name)
    if principal is None or not principal.is_operator:
        return None
    try:
        presented = bytes.fromhex(mac_hex)
    except ValueError:
        return None
    message = context + f"{name}\n{expires}".encode()
    matched = False
    for mac in keyring.sign(principal, message):
        matched |= hmac.compare_digest(mac, presented)
    return principal if matched else None


def new_codec_session(keyring: Keyring, principal: Principal, now: float | None = None) -> str:
    """A cookie value that lets a browser (the Temporal UI) call /codec for a few hours."""
    return _new_session(keyring, principal, _SESSION_CONTEXT, CODEC_SESSION_TTL, now)


def codec_session_principal(
    keyring: Keyring, cookie: str, now: float | None = None
) -> Principal | None:
    return _session_principal(keyring, cookie, _SESSION_CONTEXT, now)


def new_console_session(keyring: Keyring, principal: Principal, now: float | None = None) -> str:
    """A cookie value that signs a browser in to the operator console (api.pages.console)."""
    return _new_session(keyring, principal, _CONSOLE_CONTEXT, CONSOLE_SESSION_TTL, now)


def console_session_principal(
    keyring: Keyring, cookie: str, now: float | None = None
) -> Principal | None:
    return _session_principal(keyring, cookie, _CONSOLE_CONTEXT, now)
