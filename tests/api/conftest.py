"""The HTTP API wired to the shared e2e stack: real dev server, real worker, real database.

`api` is an httpx client talking to the app in-process (ASGITransport); the app's lifespan
runs with the stack's Temporal client and engine handed in, so no second worker or connection
is made. Ids are fresh per test, so tests share the stack without seeing each other's orders.

The app runs with the development API keys whatever the environment says. `api` sends the
operator key; `client_api` and `other_client_api` are two clients (A and B), `anonymous_api`
sends no key at all.
"""

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import Session

from api.main import create_app
from api.signatures import SIGNATURE_HEADER, sign
from models.tables import Shipment
from settings import DEV_API_KEYS
from tests.conftest import E2EStack, eventually, new_id

OPERATOR_KEY = "omk_dev_operator"
CLIENT_KEY = "omk_dev_client"  # named dev-client
OTHER_CLIENT_KEY = "omk_dev_client2"  # named dev-client-2

ORDER = {
    "customer_id": "cus_ada",
    "items": [{"sku": "BOOK-DUNE", "quantity": 1}],
    "delivery": "standard",
    "payment": {"token": "tok_visa"},
}


def order_body(**changes: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(ORDER)), **changes}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
async def api_app(e2e_stack: E2EStack) -> AsyncIterator[FastAPI]:
    settings = e2e_stack.settings.model_copy(update={"api_keys": DEV_API_KEYS})
    app = create_app(settings, temporal_client=e2e_stack.client, engine=e2e_stack.engine)
    async with app.router.lifespan_context(app):
        yield app


def http_client(app: FastAPI, key: str | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://ordermill.test",
        headers=bearer(key) if key else None,
    )


@pytest.fixture(scope="session")
async def api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The operator: sees and may do everything."""
    async with http_client(api_app, OPERATOR_KEY) as client:
        yield client


@pytest.fixture(scope="session")
async def client_api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Client A (dev-client)."""
    async with http_client(api_app, CLIENT_KEY) as client:
        yield client


@pytest.fixture(scope="session")
async def other_client_api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Client B (dev-client-2)."""
    async with http_client(api_app, OTHER_CLIENT_KEY) as client:
        yield client


@pytest.fixture(scope="session")
async def anonymous_api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """No API key."""
    async with http_client(api_app, None) as client:
        yield client


@pytest.fixture(scope="session")
def webhook_secret(e2e_stack: E2EStack) -> str:
    return e2e_stack.settings.webhook_secret


async def place(api: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    response = await api.post("/orders", json=order_body(**changes))
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def follow(
    api: httpx.AsyncClient, order_id: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll GET /orders/{id} until `check` holds (with a deadline)."""

    async def fetch() -> dict[str, Any]:
        response = await api.get(f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return await eventually(fetch, check, within=30)


def has_status(*statuses: str) -> Callable[[dict[str, Any]], bool]:
    return lambda view: view["status"] in statuses


def carrier_event(tracking_number: str, status: str, **changes: Any) -> dict[str, Any]:
    return {
        "event_id": new_id("evt"),
        "tracking_number": tracking_number,
        "status": status,
        "occurred_at": datetime.now(UTC).isoformat(),
        **changes,
    }


async def post_event(
    api: httpx.AsyncClient,
    event: dict[str, Any] | bytes,
    secret: str | list[str] | None,
    *,
    timestamp: int | None = None,
    header: str | None = None,
) -> httpx.Response:
    """Post a carrier event signed with `secret` (unsigned when None), or with `header` as is."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    headers = {b"Content-Type": b"application/json"}
    if header is not None:
        headers[SIGNATURE_HEADER.encode()] = header.encode("latin-1")
    elif secret is not None:
        headers[SIGNATURE_HEADER.encode()] = sign(body, secret, timestamp).encode()
    return await api.post("/webhooks/carrier", content=body, headers=headers)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert {"type", "title", "detail"} <= problem.keys()
    assert "Traceback" not in response.text
    return problem


def orphan_shipment(engine: Engine, prefix: str = "OMTEST") -> str:
    """A shipment whose order has no workflow: valid events for it are answered `order_closed`."""
    tracking = new_id(prefix).upper()
    with Session(engine) as session:
        session.add(
            Shipment(
                tracking_number=tracking,
                idempotency_key=new_id("ship"),
                order_id=new_id("ord_gone"),
                carrier="simulated-carrier",
                service="standard",
            )
        )
        session.commit()
    return tracking
