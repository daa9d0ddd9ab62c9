"""One of an order's Updates, from a route: the caller's Idempotency-Key claimed, the Update
run (api.order_calls.run_update), and the answer's headers set.

Every route that acts on an order through an Update (cancel, returns, refunds, questions,
feedback, and operators' decisions) goes through `order_update`, so they all answer alike:
a key reused for another request is a 409, a replayed one says so (`Idempotent-Replayed`).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from anyio import to_thread
from fastapi import Depends, Header, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Engine
from temporalio.client import Client

from api import idempotency
from api.auth import Principal, PrincipalDep
from api.deps import EngineDep, SettingsDep, TemporalClientDep
from api.order_calls import Refusal, View, order_closed, run_update
from api.problems import ApiProblem
from models.orders import OrderView
from settings import Settings

_KEY_DOC = (
    "Any unique string (a UUID is best). A retry with the same key and body gets the first "
    "request's outcome instead of acting twice; the same key with another request is a 409. "
    "Keys are your own and kept for a day."
)
RequiredKey = Annotated[
    str,
    Header(
        alias=idempotency.KEY_HEADER,
        pattern=idempotency.KEY_PATTERN,
        description="Required: this moves money. " + _KEY_DOC,
    ),
]
OptionalKey = Annotated[
    str | None,
    Header(alias=idempotency.KEY_HEADER, pattern=idempotency.KEY_PATTERN, description=_KEY_DOC),
]


@dataclass(frozen=True)
class Caller:
    """What a route needs to run an Update for whoever is calling."""

    client: Client
    engine: Engine
    settings: Settings
    principal: Principal
    response: Response


async def get_caller(
    client: TemporalClientDep,
    engine: EngineDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    response: Response,
) -> Caller:
    return Caller(client, engine, settings, principal, response)


CallerDep = Annotated[Caller, Depends(get_caller)]


def key_reused(err: idempotency.KeyReused) -> ApiProblem:
    """Keys are the caller's own, so the order they were used for is the caller's to know."""
    return ApiProblem(
        409,
        "idempotency-key-reused",
        f"this {idempotency.KEY_HEADER} was already used for a different request (on order "
        f"{err.order_id}); use a new key for a new request",
        title="Idempotency key reused",
    )


async def order_update(
    caller: Caller,
    order_id: str,
    action: str,
    update: str,
    request: BaseModel,
    result_type: type[View],
    *,
    refusal: Refusal,
    key: str | None,
    when_closed: Callable[[OrderView], Awaitable[Any]] = order_closed,
) -> View | JSONResponse:
    """Run `update` on the order for the caller; `action` names the route (`returns`, ...)."""
    update_id, replayed = None, False
    if key is not None:
        try:
            claim = await to_thread.run_sync(
                idempotency.claim,
                caller.engine,
                caller.principal.name,
                key,
                idempotency.fingerprint(f"POST /orders/{order_id}/{action}", request),
                order_id,
                caller.settings.idempotency_key_ttl,
            )
        except idempotency.KeyReused as err:
            raise key_reused(err) from None
        update_id = idempotency.update_id(update, caller.principal.name, key)
        replayed = claim.replayed
    answer = await run_update(
        caller.client,
        caller.engine,
        order_id,
        update,
        request,
        result_type,
        refusal=refusal,
        wait=caller.settings.update_wait,
        update_id=update_id,
        when_closed=when_closed,
    )
    if replayed:
        headers = answer.headers if isinstance(answer, JSONResponse) else caller.response.headers
        headers["Idempotent-Replayed"] = "true"
    return answer
