"""Who may do what: API keys, roles and order ownership, over every endpoint.

The table lists each endpoint once with the answer each caller gets: client A (who placed the
orders under test), client B, an operator, no key, and a key nobody issued. Then the details
the table cannot show: the 401 challenge, that another client's order is the very same 404 as
an unknown one, listing, idempotency keys across clients, key rotation, 413s.
"""

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session

from api.main import create_app
from models.tables import OrderRecord
from tests.api.conftest import (
    CLIENT_KEY,
    OPERATOR_KEY,
    OTHER_CLIENT_KEY,
    assert_problem,
    carrier_event,
    follow,
    has_status,
    http_client,
    order_body,
    place,
    post_event,
)
from tests.conftest import E2EStack, eventually, new_id

CALLERS = {
    "A": CLIENT_KEY,
    "B": OTHER_CLIENT_KEY,
    "operator": OPERATOR_KEY,
    "no key": None,
    "bad key": "omk_nobody_issued_this",
}


@pytest.fixture(scope="module")
async def callers(api_app: FastAPI) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    clients = {name: http_client(api_app, key) for name, key in CALLERS.items()}
    for client in clients.values():
        await client.__aenter__()
    yield clients
    for client in clients.values():
        await client.__aexit__(None, None, None)


@pytest.fixture(scope="module")
async def a_order(callers: dict[str, httpx.AsyncClient]) -> str:
    """An order client A placed, shipped (so paid for): for endpoints that leave it be."""
    order_id = str((await place(callers["A"]))["order_id"])
    await follow(callers["A"], order_id, has_status("shipped"))
    return order_id


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {order} is an order of A's: a fresh one when `fresh`, else the shared one
    expect: dict[str, int]
    body: Any = None
    fresh: bool = False
    keyed: bool = False  # sends a fresh Idempotency-Key (money-moving routes require one)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def answers(a: int, b: int, operator: int, anonymous: int = 401) -> dict[str, int]:
    return {"A": a, "B": b, "operator": operator, "no key": anonymous, "bad key": anonymous}


CODEC_BODY: dict[str, list[Any]] = {"payloads": []}

ENDPOINTS = [
    Endpoint("POST", "/orders", answers(202, 202, 202), body=order_body()),
    Endpoint("GET", "/orders", answers(200, 200, 200)),
    Endpoint("GET", "/orders?hold=risk_review", answers(403, 403, 200)),  # the review queue
    Endpoint("GET", "/orders/{order}", answers(200, 404, 200)),
    Endpoint("GET", "/orders/ord_nosuchorder", answers(404, 404, 404)),
    Endpoint("POST", "/orders/{order}/cancel", answers(200, 404, 200), body={}, fresh=True),
    Endpoint("POST", "/orders/ord_nosuchorder/cancel", answers(404, 404, 404), body={}),
    # Customer service. Not yet delivered, the order refuses returns and feedback (409): the
    # key got through. Goodwill refunds are for operators; B does not even learn the order is.
    Endpoint(
        "POST",
        "/orders/{order}/returns",
        answers(409, 404, 409),
        body={"lines": [{"sku": "BOOK-DUNE", "quantity": 1}], "reason": "damaged"},
        keyed=True,
    ),
    Endpoint("POST", "/orders/{order}/inquiries", answers(201, 404, 201), body={"message": "hi"}),
    Endpoint("POST", "/orders/{order}/feedback", answers(409, 404, 409), body={"rating": 5}),
    Endpoint(
        "POST",
        "/orders/{order}/refunds",
        answers(403, 404, 201),
        body={"amount": 1, "reason": "late delivery"},
        keyed=True,
    ),
    Endpoint(
        "POST",
        "/orders/ord_nosuchorder/refunds",
        answers(404, 404, 404),
        body={"amount": 1, "reason": "late delivery"},
        keyed=True,
    ),
    # Hold decisions are operators' too; the shared order has no hold to decide (404).
    Endpoint("POST", "/orders/{order}/holds/capture_declined/release", answers(403, 404, 404)),
    Endpoint(
        "POST",
        "/orders/{order}/holds/capture_declined/reject",
        answers(403, 404, 404),
        body={"reason": "written off"},
    ),
    Endpoint("GET", "/products", answers(200, 200, 200)),
    # Stock arriving is an operator's record; a unit more of the shared demo book harms nobody.
    Endpoint(
        "POST",
        "/products/BOOK-DUNE/stock",
        answers(403, 403, 200),
        body={"warehouse": "WH-EAST", "add": 1},
        keyed=True,
    ),
    Endpoint(
        "POST",
        "/customers",
        answers(201, 201, 201),
        body={"name": "Key Holder", "email": "holder@example.com"},
    ),
    # The demo customers are shared in development; another client's are a 404 (below).
    Endpoint("GET", "/customers/cus_ada", answers(200, 200, 200)),
    Endpoint("GET", "/customers/cus_nosuchcustomer", answers(404, 404, 404)),
    # No run has finished before this table's POST starts the first (they run in this order).
    Endpoint("GET", "/reconciliation/reports/latest", answers(403, 403, 404)),
    Endpoint("GET", "/reconciliation/runs/rec_nosuchrun", answers(403, 403, 404)),
    Endpoint("POST", "/reconciliation/runs", answers(403, 403, 202)),
    Endpoint("POST", "/codec/encode", answers(403, 403, 200), body=CODEC_BODY),
    Endpoint("POST", "/codec/decode", answers(403, 403, 200), body=CODEC_BODY),
    # Public: a signature is the credential, and an API key changes nothing.
    Endpoint("POST", "/webhooks/carrier", answers(401, 401, 401), body={"event_id": "x"}),
    Endpoint("GET", "/downloads/{order}/EBOOK-DUNE", answers(403, 403, 403, anonymous=403)),
    Endpoint("GET", "/healthz", answers(200, 200, 200, anonymous=200)),
    Endpoint("GET", "/readyz", answers(200, 200, 200, anonymous=200)),
    Endpoint("GET", "/openapi.json", answers(200, 200, 200, anonymous=200)),
    Endpoint("GET", "/docs", answers(200, 200, 200, anonymous=200)),
    # METRICS_AUTH is open in development (operator-only: tests/api/test_api_metrics.py).
    Endpoint("GET", "/metrics", answers(200, 200, 200, anonymous=200)),
]


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
async def test_who_may_use_each_endpoint(
    endpoint: Endpoint,
    caller: str,
    callers: dict[str, httpx.AsyncClient],
    a_order: str,
) -> None:
    order = str((await place(callers["A"]))["order_id"]) if endpoint.fresh else a_order
    headers = {"Idempotency-Key": str(uuid.uuid4())} if endpoint.keyed else {}
    response = await callers[caller].request(
        endpoint.method, endpoint.path.format(order=order), json=endpoint.body, headers=headers
    )
    expected = endpoint.expect[caller]
    assert response.status_code == expected, f"{caller}: {response.text}"
    if expected >= 400:
        assert_problem(response, expected)
    if expected == 401 and not endpoint.path.startswith("/webhooks"):
        assert response.headers["www-authenticate"].startswith('Bearer realm="ordermill"')


async def test_the_table_covers_every_route(api_app: FastAPI, api: httpx.AsyncClient) -> None:
    """A new route must be added to ENDPOINTS (with who may use it) to pass."""
    rows = [(e.method, e.path.replace("{order}", "ord_x")) for e in ENDPOINTS]
    spec = (await api.get("/openapi.json")).json()
    operations = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]
    assert len(operations) >= 17
    for method, path in operations:
        pattern = re.compile(re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        assert any(m == method and pattern.match(p) for m, p in rows), (
            f"{method} {path} is not in the table"
        )


async def test_missing_and_unknown_keys_are_told_apart_in_the_challenge(
    anonymous_api: httpx.AsyncClient,
) -> None:
    missing = assert_problem(await anonymous_api.get("/orders"), 401)
    assert missing["type"].endswith("/unauthorized")
    response = await anonymous_api.get("/orders", headers={"Authorization": "Bearer nope"})
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    for header in ("Basic b21rX2Rldl9jbGllbnQ6", "Bearer", "omk_dev_client"):
        response = await anonymous_api.get("/orders", headers={"Authorization": header})
        assert_problem(response, 401)
    # The scheme is case-insensitive (RFC 9110); the key itself is not.
    assert (
        await anonymous_api.get("/orders", headers={"Authorization": f"bearer {CLIENT_KEY}"})
    ).status_code == 200
    upper = {"Authorization": f"Bearer {CLIENT_KEY.upper()}"}
    assert_problem(await anonymous_api.get("/orders", headers=upper), 401)


async def test_another_clients_order_is_the_same_404_as_no_order(
    client_api: httpx.AsyncClient, other_client_api: httpx.AsyncClient
) -> None:
    mine = str((await place(client_api))["order_id"])
    theirs = await other_client_api.get(f"/orders/{mine}")
    nobody = await other_client_api.get("/orders/ord_000000000000000000000000")
    seen, unknown = assert_problem(theirs, 404), assert_problem(nobody, 404)
    assert seen["detail"].replace(mine, "ID") == unknown["detail"].replace(
        "ord_000000000000000000000000", "ID"
    )
    assert {k: v for k, v in seen.items() if k not in ("detail", "instance")} == {
        k: v for k, v in unknown.items() if k not in ("detail", "instance")
    }
    assert theirs.headers.keys() == nobody.headers.keys()
    cancel = await other_client_api.post(f"/orders/{mine}/cancel")
    assert_problem(cancel, 404)
    # ...and the order was not touched.
    assert (await client_api.get(f"/orders/{mine}")).json()["status"] != "cancelled"


async def test_an_order_belongs_to_the_key_that_placed_it(
    client_api: httpx.AsyncClient,
    other_client_api: httpx.AsyncClient,
    api: httpx.AsyncClient,
    e2e_stack: E2EStack,
) -> None:
    customer_id = (
        await api.post("/customers", json={"name": "Owner Test", "email": "owner@example.com"})
    ).json()["id"]
    mine = await place(client_api, customer_id=customer_id)
    assert mine["placed_by"] == "dev-client"
    theirs = await place(other_client_api, customer_id=customer_id)

    async def owners() -> list[str | None]:
        with Session(e2e_stack.engine) as session:
            rows = [session.get(OrderRecord, order["order_id"]) for order in (mine, theirs)]
        return [row.placed_by if row else "not recorded yet" for row in rows]

    await eventually(owners, lambda found: found == ["dev-client", "dev-client-2"])

    async def listed(client: httpx.AsyncClient, **query: str) -> set[str]:
        response = await client.get("/orders", params={"customer_id": customer_id, **query})
        assert response.status_code == 200, response.text
        return {item["order_id"] for item in response.json()["items"]}

    assert await listed(client_api) == {mine["order_id"]}
    assert await listed(other_client_api) == {theirs["order_id"]}
    assert await listed(api) == {mine["order_id"], theirs["order_id"]}
    assert (await api.get(f"/orders/{mine['order_id']}")).json()["placed_by"] == "dev-client"


async def test_an_idempotency_key_is_each_clients_own(
    client_api: httpx.AsyncClient, other_client_api: httpx.AsyncClient
) -> None:
    # B uses the key first, with another body: that claims nothing of A's.
    key = new_id("idem")
    early = await other_client_api.post(
        "/orders", json=order_body(delivery="express"), headers={"Idempotency-Key": key}
    )
    assert early.status_code == 202, early.text
    first = await client_api.post("/orders", json=order_body(), headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    order_id = first.json()["order_id"]
    assert order_id != early.json()["order_id"]
    # B sending the very same key and body as A is never handed A's order, nor told its id.
    copied = await other_client_api.post(
        "/orders", json=order_body(), headers={"Idempotency-Key": key}
    )
    problem = assert_problem(copied, 409)  # B's own key, used by B for another body
    assert order_id not in copied.text
    assert early.json()["order_id"] in problem["detail"]
    again = await client_api.post("/orders", json=order_body(), headers={"Idempotency-Key": key})
    assert again.json()["order_id"] == order_id
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_client_orders_only_for_its_own_customers(
    client_api: httpx.AsyncClient, other_client_api: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    created = await client_api.post(
        "/customers",
        json={
            "name": "Private Person",
            "email": "private@example.com",
            "address": {
                "name": "Private Person",
                "line1": "7 Hidden Lane",
                "city": "Springfield",
                "postal_code": "62701",
                "country": "US",
            },
        },
    )
    assert created.status_code == 201, created.text
    mine = created.json()
    assert mine["owner"] == "dev-client"
    assert (await client_api.get(f"/customers/{mine['id']}")).json() == mine
    assert (await api.get(f"/customers/{mine['id']}")).status_code == 200

    # To B, A's customer is exactly a customer that does not exist: reading and ordering.
    theirs = await other_client_api.get(f"/customers/{mine['id']}")
    nobody = await other_client_api.get("/customers/cus_0000000000000000")
    assert assert_problem(theirs, 404)["detail"].replace(mine["id"], "ID") == assert_problem(
        nobody, 404
    )["detail"].replace("cus_0000000000000000", "ID")
    ordered = await other_client_api.post("/orders", json=order_body(customer_id=mine["id"]))
    unknown = await other_client_api.post(
        "/orders", json=order_body(customer_id="cus_0000000000000000")
    )
    assert assert_problem(ordered, 422)["errors"] == assert_problem(unknown, 422)["errors"]
    assert "7 Hidden Lane" not in ordered.text and "private@" not in ordered.text

    # A orders for its customer, to the address on file; an operator may too.
    assert (await place(client_api, customer_id=mine["id"]))["placed_by"] == "dev-client"
    assert (await place(api, customer_id=mine["id"]))["customer_id"] == mine["id"]


async def test_only_an_operator_creates_a_customer_for_another_client(
    client_api: httpx.AsyncClient, other_client_api: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    body = {"name": "Given Away", "email": "given@example.com", "owner": "dev-client-2"}
    assert_problem(await client_api.post("/customers", json=body), 403)
    given = await api.post("/customers", json=body)
    assert given.status_code == 201, given.text
    customer_id = given.json()["id"]
    assert (await other_client_api.get(f"/customers/{customer_id}")).status_code == 200
    assert_problem(await client_api.get(f"/customers/{customer_id}"), 404)


# ---- bodies ----------------------------------------------------------------------------------

LIMIT = 64 * 1024


async def test_a_declared_body_over_64_kib_is_413_before_anything_else(
    api: httpx.AsyncClient, anonymous_api: httpx.AsyncClient
) -> None:
    big = json.dumps({**order_body(), "padding": "x" * LIMIT}).encode()
    for client, path in ((api, "/orders"), (anonymous_api, "/orders"), (api, "/customers")):
        response = await client.post(
            path, content=big, headers={"Content-Type": "application/json"}
        )
        problem = assert_problem(response, 413)
        assert problem["type"].endswith("/payload-too-large")
    at_limit = b" " * (LIMIT - 2) + b"{}"
    response = await api.post(
        "/customers", content=at_limit, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422  # read whole, then found wanting: not too large


async def test_a_streamed_body_over_64_kib_is_cut_off_with_413(api: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"customer_id": "cus_ada", "pad": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    for path in ("/orders", "/webhooks/carrier", "/orders/ord_x/cancel"):
        response = await api.post(
            path, content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 413)


async def test_more_than_100_lines_is_422(client_api: httpx.AsyncClient) -> None:
    body = order_body(items=[{"sku": "BOOK-DUNE", "quantity": 1}] * 101)
    problem = assert_problem(await client_api.post("/orders", json=body), 422)
    assert problem["errors"][0]["field"] == "items"


# ---- rotation --------------------------------------------------------------------------------


@pytest.fixture
async def rotated_app(e2e_stack: E2EStack) -> AsyncIterator[FastAPI]:
    """Two keys for one client (a key rotation), and two active webhook secrets."""
    settings = e2e_stack.settings.model_copy(
        update={
            "api_keys": "acme_old_key:client:acme,acme_new_key:client:acme,ops_key:operator:ops",
            "carrier_webhook_secrets": "whsec_new",
            "carrier_webhook_secret": "whsec_old",
        }
    )
    app = create_app(settings, temporal_client=e2e_stack.client, engine=e2e_stack.engine)
    async with app.router.lifespan_context(app):
        yield app


async def test_a_client_rotating_its_key_keeps_its_orders(rotated_app: FastAPI) -> None:
    async with (
        http_client(rotated_app, "acme_old_key") as old,
        http_client(rotated_app, "acme_new_key") as new,
        http_client(rotated_app, CLIENT_KEY) as retired,
    ):
        order = await place(old)
        assert order["placed_by"] == "acme"
        assert (await new.get(f"/orders/{order['order_id']}")).status_code == 200
        assert_problem(await retired.get(f"/orders/{order['order_id']}"), 401)


@pytest.mark.parametrize(
    ("secrets", "expected"),
    [(["whsec_new"], 404), (["whsec_old"], 404), (["whsec_gone"], 401)],
)
async def test_every_listed_webhook_secret_is_active(
    rotated_app: FastAPI, secrets: list[str], expected: int
) -> None:
    async with http_client(rotated_app, None) as carrier:
        event = carrier_event(new_id("OMNONE").upper(), "in_transit")
        # 404: the signature passed and the (unknown) tracking number was looked up.
        assert_problem(await post_event(carrier, event, secrets), expected)
