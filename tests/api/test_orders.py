"""Placing, reading and listing orders: every refusal is a 422 problem naming the field."""

import logging
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from models.orders import OrderTimeouts, PlaceOrderInput
from models.tables import Product, Stock
from models.wire import order_workflow_id
from tests.api.conftest import (
    assert_problem,
    follow,
    has_status,
    order_body,
    place,
)
from tests.conftest import E2EStack, eventually, new_id

ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical Way",
    "city": "Springfield",
    "postal_code": "62701",
    "country": "US",
}

INVALID_ORDERS: list[tuple[str, dict[str, Any], str]] = [
    ("no items", {"items": []}, "items"),
    ("zero quantity", {"items": [{"sku": "BOOK-DUNE", "quantity": 0}]}, "items[0].quantity"),
    ("negative quantity", {"items": [{"sku": "BOOK-DUNE", "quantity": -3}]}, "items[0].quantity"),
    ("absurd quantity", {"items": [{"sku": "BOOK-DUNE", "quantity": 1001}]}, "items[0].quantity"),
    (
        "fractional quantity",
        {"items": [{"sku": "BOOK-DUNE", "quantity": 1.5}]},
        "items[0].quantity",
    ),
    ("too many lines", {"items": [{"sku": "BOOK-DUNE", "quantity": 1}] * 101}, "items"),
    (
        "unknown sku",
        {"items": [{"sku": "BOOK-DUNE", "quantity": 1}, {"sku": "BOOK-NOPE", "quantity": 1}]},
        "items[1].sku",
    ),
    ("malformed sku", {"items": [{"sku": "dune paperback", "quantity": 1}]}, "items[0].sku"),
    ("missing sku", {"items": [{"quantity": 1}]}, "items[0].sku"),
    ("unknown customer", {"customer_id": "cus_nobody"}, "customer_id"),
    (
        "address without city",
        {"shipping_address": {k: v for k, v in ADDRESS.items() if k != "city"}},
        "shipping_address.city",
    ),
    (
        "address with blank line1",
        {"shipping_address": {**ADDRESS, "line1": "   "}},
        "shipping_address.line1",
    ),
    (
        "address with a bad country",
        {"shipping_address": {**ADDRESS, "country": "USA"}},
        "shipping_address.country",
    ),
    ("unknown delivery option", {"delivery": "teleport"}, "delivery"),
    ("missing payment", {"payment": None}, "payment"),
    ("misspelt field", {"shiping_address": ADDRESS}, "shiping_address"),
]


@pytest.mark.parametrize(
    ("changes", "field"),
    [pytest.param(c, f, id=name) for name, c, f in INVALID_ORDERS],
)
async def test_invalid_order_is_422_naming_the_field(
    api: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in order_body(**changes).items() if v is not None}
    problem = assert_problem(await api.post("/orders", json=body), 422)
    assert problem["type"].endswith("/validation-error")
    assert field in [error["field"] for error in problem["errors"]], problem
    assert all(error["reason"] for error in problem["errors"])


@pytest.mark.parametrize(
    "raw",
    [b'{"customer_id": "cus_ada", "items": [', b"", b"null", b"[]", b"\xff\xfe\x00"],
    ids=["truncated", "empty", "null", "array", "not utf-8"],
)
async def test_malformed_body_is_422(api: httpx.AsyncClient, raw: bytes) -> None:
    response = await api.post("/orders", content=raw, headers={"Content-Type": "application/json"})
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "body"


async def test_a_card_number_is_refused_and_never_echoed_or_logged(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    card = "4242424242424242"
    with caplog.at_level(logging.DEBUG):
        response = await api.post("/orders", json=order_body(payment={"token": card}))
    problem = assert_problem(response, 422)
    assert problem["errors"] == [
        {
            "field": "payment.token",
            "reason": "must be a card token from the payment provider (tok_...), never a card "
            "number",
        }
    ]
    assert card not in response.text
    assert card not in caplog.text


async def test_place_answers_202_with_location_and_the_view(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/orders",
        json=order_body(
            customer_id="cus_grace",
            items=[
                {"sku": "BOOK-NEUROMANCER", "quantity": 2},
                {"sku": "EBOOK-DUNE", "quantity": 1},
            ],
            shipping_address=ADDRESS,
            delivery="express",
        ),
    )
    assert response.status_code == 202
    view = response.json()
    assert response.headers["location"] == f"/orders/{view['order_id']}"
    assert view["order_id"].startswith("ord_")
    assert view["delivery"] == "express"
    assert view["shipping_address"]["line1"] == ADDRESS["line1"]
    assert view["status"] in {"received", "confirmed", "fulfilling"}
    assert "Idempotent-Replayed" not in response.headers

    followed = await api.get(response.headers["location"])
    assert followed.status_code == 200
    assert followed.json()["order_id"] == view["order_id"]


async def test_an_order_is_readable_and_listed_at_once_even_with_no_worker_running(
    api: httpx.AsyncClient, e2e_stack: E2EStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read model has the order from the moment POST answers, not from its first step."""
    monkeypatch.setattr("temporal_client.TASK_QUEUE", f"no-worker-{new_id('q')}")
    placed = await api.post("/orders", json=order_body())
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["order_id"]
    try:
        read = await api.get(f"/orders/{order_id}")
        assert read.status_code == 200, read.text
        assert read.json() == placed.json()
        listed = await api.get("/orders", params={"status": "received", "limit": 100})
        assert order_id in [o["order_id"] for o in listed.json()["items"]]
    finally:
        await e2e_stack.client.get_workflow_handle(order_workflow_id(order_id)).terminate()


async def test_a_declined_card_ends_the_order_and_it_stays_readable(
    api: httpx.AsyncClient,
) -> None:
    view = await place(api, payment={"token": "tok_chargeDeclined"})
    declined = await follow(api, view["order_id"], has_status("payment_declined"))
    assert declined["reason"]["code"] == "card_declined"
    assert declined["payment"]["captured"] == 0


async def test_list_orders_newest_first_with_filters_and_cursor(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/customers", json={"name": "Lister", "email": "lister@example.com", "address": ADDRESS}
    )
    customer = created.json()["id"]
    placed = [
        await place(api, customer_id=customer),
        await place(api, customer_id=customer, payment={"token": "tok_chargeDeclined"}),
        await place(api, customer_id=customer),
    ]
    newest_first = [v["order_id"] for v in reversed(placed)]

    async def listed() -> dict[str, Any]:
        response = await api.get("/orders", params={"customer_id": customer})
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    page = await eventually(listed, lambda p: len(p["items"]) == 3)
    assert [o["order_id"] for o in page["items"]] == newest_first
    assert page["next_cursor"] is None

    first = (await api.get("/orders", params={"customer_id": customer, "limit": 2})).json()
    assert [o["order_id"] for o in first["items"]] == newest_first[:2]
    assert first["next_cursor"]
    second = (
        await api.get(
            "/orders", params={"customer_id": customer, "limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()
    assert [o["order_id"] for o in second["items"]] == newest_first[2:]
    assert second["next_cursor"] is None

    async def declined() -> list[str]:
        response = await api.get(
            "/orders", params={"customer_id": customer, "status": "payment_declined"}
        )
        return [o["order_id"] for o in response.json()["items"]]

    assert await eventually(declined, bool) == [placed[1]["order_id"]]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"status": "lost"},
        {"cursor": "not-a-cursor"},
        {"cursor": "W10"},
    ],
    ids=["limit 0", "limit 101", "unknown status", "garbage cursor", "wrong-shape cursor"],
)
async def test_list_orders_refuses_bad_parameters(
    api: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    problem = assert_problem(await api.get("/orders", params=params), 422)
    assert problem["errors"][0]["field"] == next(iter(params))


async def test_products_show_available_stock(api: httpx.AsyncClient, e2e_stack: E2EStack) -> None:
    sku = new_id("TEST").upper()
    with Session(e2e_stack.engine) as session:
        session.add(Product(sku=sku, name="Test book", price=1234))
        session.flush()
        session.add(Stock(sku=sku, warehouse="WH-WEST", on_hand=10, reserved=3))
        session.add(Stock(sku=sku, warehouse="WH-EAST", on_hand=2, reserved=2))
        session.commit()
    response = await api.get("/products")
    assert response.status_code == 200
    products = {p["sku"]: p for p in response.json()}
    assert products[sku] == {
        "sku": sku,
        "name": "Test book",
        "price": 1234,
        "currency": "USD",
        "digital": False,
        "backorderable": False,
        "available": 7,
        "stock": [  # in warehouse rank order
            {"warehouse": "WH-EAST", "available": 0, "on_hand": 2},
            {"warehouse": "WH-WEST", "available": 7, "on_hand": 10},
        ],
    }
    assert products["EBOOK-DUNE"]["digital"] is True
    assert products["EBOOK-DUNE"]["available"] is None
    assert products["EBOOK-DUNE"]["stock"] == []
    assert products["BOOK-SOLDOUT"]["available"] == 0
    assert [s["warehouse"] for s in products["BOOK-EARTHSEA"]["stock"]] == ["WH-WEST"]


async def test_customers_are_created_and_read(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/customers",
        json={"name": " Alan Turing ", "email": "alan@example.com", "address": ADDRESS},
    )
    assert response.status_code == 201, response.text
    customer = response.json()
    assert response.headers["location"] == f"/customers/{customer['id']}"
    assert customer["name"] == "Alan Turing"
    assert customer["address"]["city"] == "Springfield"
    assert customer["blocked"] is False

    fetched = await api.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == customer

    # The new customer can order at once, to the address on file.
    view = await place(api, customer_id=customer["id"])
    assert view["customer_id"] == customer["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "No Email"}, "email"),
        ({"name": "Bad Email", "email": "not-an-email"}, "email"),
        ({"email": "x@example.com"}, "name"),
        ({"name": "X", "email": "x@example.com", "address": {"name": "X"}}, "address.line1"),
    ],
    ids=["missing email", "bad email", "missing name", "partial address"],
)
async def test_invalid_customer_is_422(
    api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(await api.post("/customers", json=body), 422)
    assert field in [error["field"] for error in problem["errors"]]


async def test_unknown_customer_is_404(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get("/customers/cus_nobody"), 404)


async def test_unknown_route_and_method_are_problems(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get("/nowhere"), 404)
    assert_problem(await api.delete("/orders"), 405)


async def test_an_order_waits_as_long_as_the_settings_say(
    api: httpx.AsyncClient, e2e_stack: E2EStack
) -> None:
    """DELIVERY_TIMEOUT, RETURN_WINDOW and RETURN_ARRIVAL_TIMEOUT reach the order's input."""
    placed = await place(api)
    handle = e2e_stack.client.get_workflow_handle(order_workflow_id(placed["order_id"]))
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [order] = await e2e_stack.client.data_converter.decode(
        started.input.payloads, [PlaceOrderInput]
    )
    settings = e2e_stack.settings
    assert order.timeouts == OrderTimeouts(
        delivery_timeout=settings.delivery_timeout,
        return_window=settings.return_window,
        return_arrival_timeout=settings.return_arrival_timeout,
    )
