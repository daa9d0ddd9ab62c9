"""Input is checked at the edge and never reaches a 500: free text without control
characters, merged lines within their bound, cursors this API made, methods it serves, and an
OpenAPI document that names every answer an operation gives.

Each case here was once a 500 (or a silent success); the answers are 4xx problems naming the
field, before anything reaches the database or Temporal.
"""

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.api.conftest import assert_problem, order_body

ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical Way",
    "city": "Springfield",
    "postal_code": "62701",
    "country": "US",
}
KEYED = {"Idempotency-Key": "edge-inputs"}
NUL, ESC, BELL, C1 = "\x00", "\x1b", "\x07", "\x85"

# (method, path, body, the field named, headers): every free-text field of every body.
FREE_TEXT: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/customers", {"name": f"Ada{NUL}", "email": "a@example.com"}, "name"),
    (
        "POST",
        "/customers",
        {"name": "Ada", "email": "a@example.com", "address": {**ADDRESS, "city": f"X{ESC}[2J"}},
        "address.city",
    ),
    (
        "POST",
        "/orders",
        order_body(shipping_address={**ADDRESS, "line1": f"1 Bell{BELL} Road"}),
        "shipping_address.line1",
    ),
    (
        "POST",
        "/orders",
        order_body(shipping_address={**ADDRESS, "line2": f"Flat{C1}2"}),
        "shipping_address.line2",
    ),
    (
        "POST",
        "/orders",
        order_body(shipping_address={**ADDRESS, "postal_code": f"627{NUL}01"}),
        "shipping_address.postal_code",
    ),
    ("POST", "/orders/ord_edge/cancel", {"reason": "no\nmore"}, "reason"),
    ("POST", "/orders/ord_edge/inquiries", {"message": f"Hello{NUL}"}, "message"),
    ("POST", "/orders/ord_edge/feedback", {"rating": 4, "comment": f"ok{ESC}"}, "comment"),
    (
        "POST",
        "/orders/ord_edge/returns",
        {
            "lines": [{"sku": "BOOK-DUNE", "quantity": 1}],
            "reason": "other",
            "comment": f"torn{BELL}",
        },
        "comment",
    ),
    ("POST", "/orders/ord_edge/refunds", {"amount": 100, "reason": f"late{NUL}"}, "reason"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    FREE_TEXT,
    ids=[f"{path} {field}" for _, path, _, field in FREE_TEXT],
)
async def test_control_characters_in_free_text_are_422_naming_the_field(
    api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    response = await api.request(method, path, json=body, headers=KEYED)
    problem = assert_problem(response, 422)
    assert [e["field"] for e in problem["errors"]] == [field]
    assert "control characters" in problem["errors"][0]["reason"]


async def test_messages_and_comments_may_span_lines(api: httpx.AsyncClient) -> None:
    # The order is unknown: past validation, so a multi-line message was valid.
    response = await api.post(
        "/orders/ord_edge/inquiries", json={"message": "Hello,\r\n\tis it gift-wrapped?"}
    )
    assert_problem(response, 404)


async def test_a_lone_surrogate_is_422_not_an_encoding_error(api: httpx.AsyncClient) -> None:
    raw = b'{"name": "Ada \\ud800", "email": "a@example.com"}'
    response = await api.post(
        "/customers", content=raw, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(response, 422)
    assert problem["errors"] == [{"field": "name", "reason": "must be valid Unicode text"}]


async def test_one_products_lines_adding_up_past_the_bound_are_422(
    api: httpx.AsyncClient,
) -> None:
    items = [{"sku": "BOOK-DUNE", "quantity": 999}, {"sku": "BOOK-DUNE", "quantity": 2}]
    problem = assert_problem(await api.post("/orders", json=order_body(items=items)), 422)
    assert problem["errors"] == [
        {
            "field": "items",
            "reason": "the lines of BOOK-DUNE add up to 1001; at most 1000 of one product "
            "per order",
        }
    ]
    fine = [{"sku": "BOOK-DUNE", "quantity": 500}, {"sku": "BOOK-DUNE", "quantity": 500}]
    body = order_body(items=fine, customer_id="cus_blocked")  # rejected by the workflow at once
    assert (await api.post("/orders", json=body)).status_code == 202


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzAxOjAwIiwgIngiXQ",  # year 1, +01:00: overflows in UTC
        cursor_of(["9999-12-31T23:59:59-01:00", "ord_x"]),
        cursor_of(["2026-01-01T00:00:00+00:00", "ord\x00x"]),
        cursor_of(["2026-01-01T00:00:00+00:00", 7]),
        cursor_of(["2026-01-01T00:00:00+00:00"]),
        cursor_of({"placed_at": "2026-01-01"}),
        "%%%",
    ],
    ids=["year 1", "year 10000", "NUL id", "number id", "short", "object", "not base64"],
)
async def test_a_cursor_this_api_did_not_make_is_422(api: httpx.AsyncClient, cursor: str) -> None:
    problem = assert_problem(await api.get("/orders", params={"cursor": cursor}), 422)
    assert problem["errors"] == [{"field": "cursor", "reason": "is not a cursor this API gave out"}]


@pytest.mark.parametrize("customer_id", ["cus\x00x", "cus x", "c" * 65])
async def test_a_customer_filter_that_is_no_customer_id_is_422(
    api: httpx.AsyncClient, customer_id: str
) -> None:
    response = await api.get("/orders", params={"customer_id": customer_id})
    assert assert_problem(response, 422)["errors"][0]["field"] == "customer_id"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/orders", "GET, POST"),
        ("DELETE", "/orders", "GET, POST"),
        ("PUT", "/orders/ord_x", "GET"),
        ("GET", "/orders/ord_x/cancel", "POST"),
        ("DELETE", "/customers/cus_ada", "GET"),
    ],
)
async def test_a_method_not_served_is_405_naming_every_method_that_is(
    api: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await api.request(method, path)
    assert_problem(response, 405)
    assert response.headers["allow"] == allowed


async def test_the_openapi_document_names_the_answers_of_auth(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    assert "HTTPValidationError" not in json.dumps(spec)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            public = path.startswith(("/webhooks", "/downloads", "/healthz", "/readyz"))
            if not public:
                assert "401" in responses, f"{method} {path}"
                assert "WWW-Authenticate" in responses["401"]["headers"], f"{method} {path}"
            if "requestBody" in operation:
                assert {"413", "422"} <= responses.keys(), f"{method} {path}"
            for status, answer in responses.items():
                if int(status) >= 400:
                    content = answer["content"]
                    assert list(content) == ["application/problem+json"], f"{method} {path}"
    refunds = spec["paths"]["/orders/{order_id}/refunds"]["post"]["responses"]
    assert {"201", "202", "400", "401", "403", "404", "409", "503"} <= refunds.keys()


async def test_a_retried_key_reused_for_another_order_is_409(api: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = order_body(customer_id="cus_blocked")
    assert (await api.post("/orders", json=body, headers=key)).status_code == 202
    other = await api.post("/orders", json={**body, "delivery": "express"}, headers=key)
    assert assert_problem(other, 409)["type"].endswith("/idempotency-key-reused")
