"""POST /webhooks/carrier: signatures, refusals, and the answers carriers must never retry."""

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from api.main import create_app
from api.signatures import sign
from tests.api.conftest import (
    assert_problem,
    carrier_event,
    follow,
    has_status,
    orphan_shipment,
    place,
    post_event,
)
from tests.conftest import E2EStack


@pytest.fixture
def orphan_tracking(e2e_stack: E2EStack) -> str:
    """A shipment whose order has no workflow: valid events for it are answered `order_closed`."""
    return orphan_shipment(e2e_stack.engine)


async def test_a_valid_event_is_accepted(
    api: httpx.AsyncClient, orphan_tracking: str, webhook_secret: str
) -> None:
    event = carrier_event(orphan_tracking, "in_transit")
    response = await post_event(api, event, webhook_secret)
    assert response.status_code == 200, response.text
    assert response.json() == {"event_id": event["event_id"], "outcome": "order_closed"}


async def test_missing_signature_is_401(api: httpx.AsyncClient, orphan_tracking: str) -> None:
    problem = assert_problem(
        await post_event(api, carrier_event(orphan_tracking, "in_transit"), None), 401
    )
    assert problem["type"].endswith("/invalid-signature")
    assert "missing" in problem["detail"]


async def test_wrong_secret_is_401(api: httpx.AsyncClient, orphan_tracking: str) -> None:
    event = carrier_event(orphan_tracking, "in_transit")
    assert_problem(await post_event(api, event, "whsec_guessed"), 401)


async def test_a_tampered_body_is_401(
    api: httpx.AsyncClient, orphan_tracking: str, webhook_secret: str
) -> None:
    event = carrier_event(orphan_tracking, "in_transit")
    header = sign(json.dumps(event).encode(), webhook_secret)
    event["status"] = "delivered"
    assert_problem(await post_event(api, event, None, header=header), 401)


@pytest.mark.parametrize("skew", [-301, 301, -3600], ids=["stale", "future", "an hour old"])
async def test_a_signature_outside_five_minutes_is_401(
    api: httpx.AsyncClient, orphan_tracking: str, webhook_secret: str, skew: int
) -> None:
    event = carrier_event(orphan_tracking, "in_transit")
    response = await post_event(api, event, webhook_secret, timestamp=int(time.time()) + skew)
    assert "300 s" in assert_problem(response, 401)["detail"]


async def test_a_signature_just_inside_the_tolerance_is_accepted(
    api: httpx.AsyncClient, orphan_tracking: str, webhook_secret: str
) -> None:
    event = carrier_event(orphan_tracking, "in_transit")
    response = await post_event(api, event, webhook_secret, timestamp=int(time.time()) - 240)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "t=abc,v1=00",
        "v1=" + "0" * 64,
        "t=1700000000",
        "t=\u00b9\u00b2\u00b3,v1=" + "a" * 64,
    ],
    ids=["empty", "garbage", "bad values", "no timestamp", "no signature", "superscript digits"],
)
async def test_a_malformed_signature_header_is_401(
    api: httpx.AsyncClient, orphan_tracking: str, header: str
) -> None:
    event = carrier_event(orphan_tracking, "in_transit")
    assert_problem(await post_event(api, event, None, header=header), 401)


async def test_rotation_the_carrier_signs_with_a_secret_we_do_not_have_yet(
    api: httpx.AsyncClient, orphan_tracking: str, webhook_secret: str
) -> None:
    event = carrier_event(orphan_tracking, "in_transit")
    assert_problem(await post_event(api, event, "whsec_next"), 401)
    # During the rotation the carrier signs with both; one match is enough.
    response = await post_event(api, event, ["whsec_next", webhook_secret])
    assert response.status_code == 200, response.text


@pytest.fixture
async def rotating_api(e2e_stack: E2EStack) -> AsyncIterator[httpx.AsyncClient]:
    """The app configured with two secrets, old and new, while a rotation is under way."""
    settings = e2e_stack.settings.model_copy(
        update={"carrier_webhook_secret": "whsec_old, whsec_new"}
    )
    app: FastAPI = create_app(settings, temporal_client=e2e_stack.client, engine=e2e_stack.engine)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ordermill.test"
        ) as client,
    ):
        yield client


async def test_rotation_we_accept_the_old_and_the_new_secret(
    rotating_api: httpx.AsyncClient, orphan_tracking: str
) -> None:
    for secret in ("whsec_old", "whsec_new"):
        event = carrier_event(orphan_tracking, "in_transit")
        assert (await post_event(rotating_api, event, secret)).status_code == 200
    event = carrier_event(orphan_tracking, "in_transit")
    assert_problem(await post_event(rotating_api, event, "whsec_dev_ordermill"), 401)


async def test_unknown_tracking_number_is_404(api: httpx.AsyncClient, webhook_secret: str) -> None:
    event = carrier_event("OMNOSUCHPARCEL", "in_transit")
    problem = assert_problem(await post_event(api, event, webhook_secret), 404)
    assert problem["type"].endswith("/shipment-not-found")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "lost_in_space"}, "status"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"event_id": ""}, "event_id"),
        ({"tracking_number": None}, "tracking_number"),
        # A naive time cannot be ordered beside the carrier's other events (it froze orders).
        ({"occurred_at": "2026-11-26T10:00:00"}, "occurred_at"),
        ({"event_id": "evt\u0000nul"}, "event_id"),
        ({"description": "Left at\u001b[31m the door"}, "description"),
    ],
    ids=[
        "unknown status",
        "bad time",
        "empty event id",
        "null tracking number",
        "naive time",
        "NUL in the id",
        "escape in the description",
    ],
)
async def test_a_malformed_event_is_422(
    api: httpx.AsyncClient,
    orphan_tracking: str,
    webhook_secret: str,
    change: dict[str, object],
    field: str,
) -> None:
    event = {**carrier_event(orphan_tracking, "in_transit"), **change}
    problem = assert_problem(await post_event(api, event, webhook_secret), 422)
    assert [e["field"] for e in problem["errors"]] == [field]


@pytest.mark.parametrize("raw", [b"{", b"", b"[1]", b"\xff"], ids=["cut", "empty", "array", "bin"])
async def test_a_body_that_is_not_an_event_is_422(
    api: httpx.AsyncClient, webhook_secret: str, raw: bytes
) -> None:
    assert_problem(await post_event(api, raw, webhook_secret), 422)


async def test_an_oversized_body_is_413(api: httpx.AsyncClient, webhook_secret: str) -> None:
    assert_problem(await post_event(api, b" " * (64 * 1024 + 1), webhook_secret), 413)


async def test_the_signature_is_checked_before_anything_else(api: httpx.AsyncClient) -> None:
    # Unsigned garbage for an unknown parcel says nothing about parcels or formats.
    assert_problem(await post_event(api, b"{", None), 401)


async def test_the_same_event_id_on_two_parcels_moves_both(
    client_api: httpx.AsyncClient, webhook_secret: str
) -> None:
    """Event ids are the carrier's per parcel: one already seen on parcel A is news for B."""
    orders = [(await place(client_api))["order_id"] for _ in range(2)]
    trackings = [
        (await follow(client_api, order_id, has_status("shipped")))["shipments"][0][
            "tracking_number"
        ]
        for order_id in orders
    ]
    for tracking in trackings:
        event = carrier_event(tracking, "delivered", event_id="evt_shared_by_parcels")
        response = await post_event(client_api, event, webhook_secret)
        assert response.json()["outcome"] == "signalled", response.text
    for order_id in orders:
        await follow(client_api, order_id, has_status("delivered"))
