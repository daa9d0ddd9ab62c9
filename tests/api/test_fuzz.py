"""Property tests: whatever a client or a carrier sends, the answer is never a 5xx.

Bodies are drawn near the valid shape (so validation is exercised field by field) and fully
at random. The only customer that can make a body valid is the blocked one, whose orders the
workflow rejects at once, so fuzzing leaves no long-running orders behind.
"""

import json
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from api.signatures import SIGNATURE_HEADER, sign
from tests.api.conftest import orphan_shipment
from tests.conftest import E2EStack, new_id

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything at all."""
    return st.one_of(valid, valid, valid, valid, json_values)


def shaped(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """Usually the model's shape; sometimes with fields missing or one nobody asked for."""
    return st.one_of(
        st.fixed_dictionaries(required, optional=optional),
        st.fixed_dictionaries(required, optional=optional),
        st.fixed_dictionaries({}, optional={**required, **optional, "unexpected": json_values}),
    )


addresses = shaped(
    {
        "name": maybe(st.text(max_size=210)),
        "line1": maybe(st.text(max_size=210)),
        "city": maybe(st.text(max_size=30)),
        "postal_code": maybe(st.text(max_size=25)),
        "country": maybe(st.sampled_from(["US", "us", "GB", "ZZ", "USA", ""])),
    },
    {"line2": maybe(st.none() | st.text(max_size=10))},
)
items = shaped(
    {
        "sku": maybe(st.sampled_from(["BOOK-DUNE", "EBOOK-DUNE", "BOOK-DUNE", "BOOK-NOPE", "a b"])),
        "quantity": maybe(st.integers(1, 3) | st.integers(1, 3) | st.integers(-10, 2000)),
    },
    {},
)
orders = shaped(
    {
        # The blocked customer's orders are rejected by the workflow at once.
        "customer_id": maybe(st.sampled_from(["cus_blocked", "cus_blocked", "cus nobody"])),
        "items": maybe(st.lists(maybe(items), min_size=1, max_size=2)),
        "payment": maybe(
            shaped({"token": maybe(st.sampled_from(["tok_visa", "4242424242424242"]))}, {})
        ),
    },
    {
        "shipping_address": maybe(st.none() | addresses),
        "delivery": maybe(st.sampled_from(["standard", "express", "drone"])),
    },
)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)


def body_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def assert_no_server_error(response: httpx.Response, allowed: set[int]) -> None:
    event(f"HTTP {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.status_code < 500, response.text
    assert response.status_code in allowed, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert {"type", "title", "status", "detail"} <= response.json().keys()


@FUZZ
@given(
    body=st.one_of(
        orders.map(body_bytes),
        orders.map(body_bytes),
        json_values.map(body_bytes),
        st.binary(max_size=200),
    ),
    content_type=st.sampled_from(
        ["application/json"] * 4 + ["text/plain", "application/x-json", None]
    ),
    key=st.none() | st.sampled_from(["fuzz-a", "fuzz-b"]) | header_text,
)
async def test_post_orders_never_answers_5xx(
    api: httpx.AsyncClient, body: bytes, content_type: str | None, key: str | None
) -> None:
    headers: dict[bytes, bytes] = {}
    if content_type is not None:
        headers[b"Content-Type"] = content_type.encode()
    if key is not None:  # a few shared keys, so reused keys meet different bodies
        headers[b"Idempotency-Key"] = f"{RUN}-{key}".encode("latin-1")
    response = await api.post("/orders", content=body, headers=headers)
    assert_no_server_error(response, {202, 409, 422})


@FUZZ
@given(
    order_id=st.text(min_size=1, max_size=120).map(lambda s: quote(s, safe="")),
    query=st.dictionaries(
        st.sampled_from(["customer_id", "status", "limit", "cursor"]), st.text(max_size=40)
    ),
)
async def test_reading_orders_never_answers_5xx(
    api: httpx.AsyncClient, order_id: str, query: dict[str, str]
) -> None:
    got = await api.get(f"/orders/{order_id}")
    assert_no_server_error(got, {200, 404, 405, 422})
    listed = await api.get("/orders", params=query)
    assert_no_server_error(listed, {200, 422})
    cancelled = await api.post(f"/orders/{order_id}/cancel", json={"reason": order_id})
    assert_no_server_error(cancelled, {404, 405, 409, 422})


RUN = new_id("fuzz")
ORPHAN = "@orphan"  # replaced by a real tracking number whose order has no workflow

events = shaped(
    {
        "event_id": maybe(st.text(min_size=1, max_size=40)),
        "tracking_number": maybe(st.sampled_from([ORPHAN, ORPHAN, "OMUNKNOWN"])),
        "status": maybe(st.sampled_from(["in_transit", "delivered", "failure", "lost"])),
        "occurred_at": maybe(st.datetimes().map(lambda d: d.isoformat())),
    },
    {"description": maybe(st.none() | st.text(max_size=600))},
)


@FUZZ
@given(
    event=st.one_of(events, events, json_values),
    raw=st.none() | st.none() | st.binary(max_size=200),
    signing=st.sampled_from(["valid", "valid", "none", "stale", "random"]),
    random_header=header_text,
)
async def test_carrier_webhook_never_answers_5xx(
    api: httpx.AsyncClient,
    e2e_stack: E2EStack,
    webhook_secret: str,
    event: Any,
    raw: bytes | None,
    signing: str,
    random_header: str,
) -> None:
    if isinstance(event, dict) and event.get("tracking_number") == ORPHAN:
        event["tracking_number"] = orphan_shipment(e2e_stack.engine, "OMFUZZ")
    body = raw if raw is not None else body_bytes(event)
    headers = {b"Content-Type": b"application/json"}
    name = SIGNATURE_HEADER.encode()
    if signing == "valid":
        headers[name] = sign(body, webhook_secret).encode()
    elif signing == "stale":
        headers[name] = sign(body, webhook_secret, timestamp=1_000_000_000).encode()
    elif signing == "random":
        headers[name] = random_header.encode("latin-1")
    response = await api.post("/webhooks/carrier", content=body, headers=headers)
    allowed = {200, 404, 422} if signing == "valid" else {401}
    assert_no_server_error(response, allowed)
