"""Returns, exchanges, refunds, inquiries and feedback through the HTTP API, end to end.

Real dev server, real worker, real database and SMTP sink; the carrier's parcels move only by
signed webhooks, exactly as in production. After every path that moves money the card
processor's ledger (PaymentTransaction rows) is read back: never more refunded than captured.
"""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session, select

from api.main import create_app
from models.tables import PaymentTransaction, Restock, Shipment
from tests.api.conftest import (
    assert_problem,
    carrier_event,
    follow,
    has_status,
    place,
    post_event,
)
from tests.conftest import E2EStack, eventually

DUNE, EBOOK, STANDARD_SHIPPING = 1899, 999, 499
SHORT_WINDOW = timedelta(seconds=4)


# ---- helpers ---------------------------------------------------------------------------------


async def deliver(api: httpx.AsyncClient, secret: str, **changes: Any) -> dict[str, Any]:
    """Place an order and have the carrier deliver it by signed webhook."""
    order_id = (await place(api, **changes))["order_id"]
    shipped = await follow(api, order_id, has_status("shipped"))
    tracking = shipped["shipments"][0]["tracking_number"]
    assert (await post_event(api, carrier_event(tracking, "delivered"), secret)).status_code == 200
    return await follow(api, order_id, has_status("delivered"))


def keyed() -> dict[str, str]:
    """A fresh Idempotency-Key: returns and refunds move money, so they require one."""
    return {"Idempotency-Key": str(uuid.uuid4())}


async def post_return(
    api: httpx.AsyncClient,
    order_id: str,
    lines: dict[str, int] | list[tuple[str, int]],
    resolution: str = "refund",
    reason: str = "damaged",
    **extra: Any,
) -> httpx.Response:
    pairs = list(lines.items()) if isinstance(lines, dict) else lines
    body = {
        "lines": [{"sku": sku, "quantity": n} for sku, n in pairs],
        "reason": reason,
        "resolution": resolution,
        **extra,
    }
    return await api.post(f"/orders/{order_id}/returns", json=body, headers=keyed())


async def carrier(api: httpx.AsyncClient, secret: str, tracking: str, status: str) -> None:
    """A signed event for any tracking number the carrier booked: the order's, a return's or
    an exchange's. Each must reach the order."""
    response = await post_event(api, carrier_event(tracking, status), secret)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "signalled"


def a_return(view: dict[str, Any], return_id: str) -> dict[str, Any]:
    (found,) = [r for r in view["returns"] if r["return_id"] == return_id]
    return found


def return_is(return_id: str, status: str) -> Any:
    return lambda view: any(
        r["return_id"] == return_id and r["status"] == status for r in view["returns"]
    )


def ledger(stack: E2EStack, order_id: str) -> dict[str, list[int]]:
    """The card processor's approved transactions for the order, amounts by kind."""
    with Session(stack.engine) as session:
        rows = session.exec(
            select(PaymentTransaction)
            .where(PaymentTransaction.order_id == order_id, PaymentTransaction.status == "approved")
            .order_by(PaymentTransaction.created_at)  # type: ignore[arg-type]
        ).all()
    kinds: dict[str, list[int]] = {}
    for row in rows:
        kinds.setdefault(row.kind, []).append(row.amount)
    return kinds


def assert_ledger(stack: E2EStack, view: dict[str, Any], refunds: list[int]) -> None:
    """The processor refunded exactly these amounts, never more in total than it captured,
    and the order agrees with the processor."""
    money = ledger(stack, view["order_id"])
    (captured,) = money["capture"]
    assert money.get("refund", []) == refunds
    assert sum(refunds) <= captured
    assert view["payment"]["captured"] == captured
    assert view["payment"]["refunded"] == sum(refunds)
    assert sum(r["amount"] for r in view["refunds"]) == sum(refunds)


def shipment_order(stack: E2EStack, tracking: str) -> str | None:
    with Session(stack.engine) as session:
        shipment = session.get(Shipment, tracking)
        return shipment.order_id if shipment else None


async def emailed(stack: E2EStack, order_id: str, kind: str) -> None:
    async def kinds() -> list[str]:
        return stack.smtp.kinds_for(order_id)

    await eventually(kinds, lambda found: kind in found)


@pytest.fixture(scope="module")
async def short_window_api(
    api_app: FastAPI, api: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """The API configured with a return window of seconds, on the same stack and credentials."""
    settings = api_app.state.settings.model_copy(update={"return_window": SHORT_WINDOW})
    app = create_app(
        settings, temporal_client=api_app.state.temporal_client, engine=api_app.state.engine
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=api.base_url, headers=api.headers
        ) as client:
            yield client


# ---- returns ---------------------------------------------------------------------------------


async def test_returns_refund_by_webhook_partially_then_fully(
    api: httpx.AsyncClient, e2e_stack: E2EStack, webhook_secret: str
) -> None:
    order_id = (await deliver(api, webhook_secret, items=[{"sku": "BOOK-DUNE", "quantity": 2}]))[
        "order_id"
    ]

    response = await post_return(api, order_id, {"BOOK-DUNE": 1})
    assert response.status_code == 201, response.text
    first = response.json()
    assert (first["return_id"], first["status"]) == ("RET-1", "awaiting_parcel")
    label = first["tracking_number"]
    assert label and shipment_order(e2e_stack, label) == order_id  # booked with the carrier
    await emailed(e2e_stack, order_id, "return_label")

    await carrier(api, webhook_secret, label, "in_transit")
    await carrier(api, webhook_secret, label, "delivered")
    partial = await follow(api, order_id, has_status("partially_returned"))
    assert a_return(partial, "RET-1")["refund_amount"] == DUNE
    assert partial["refunds"][0]["kind"] == "return"
    assert_ledger(e2e_stack, partial, [DUNE])
    with Session(e2e_stack.engine) as session:
        restocked = session.exec(select(Restock).where(Restock.order_id == order_id)).all()
    assert [(r.return_id, r.sku, r.quantity) for r in restocked] == [("RET-1", "BOOK-DUNE", 1)]
    await emailed(e2e_stack, order_id, "return_refunded")

    response = await post_return(api, order_id, {"BOOK-DUNE": 1}, reason="changed_mind")
    assert response.status_code == 201, response.text
    second = response.json()
    assert second["tracking_number"] != label
    await carrier(api, webhook_secret, second["tracking_number"], "delivered")
    returned = await follow(api, order_id, has_status("returned"))
    assert_ledger(e2e_stack, returned, [DUNE, DUNE])  # the lines; shipping is not refunded


async def test_exchange_ships_again_and_is_tracked_by_webhook(
    api: httpx.AsyncClient, e2e_stack: E2EStack, webhook_secret: str
) -> None:
    order_id = (await deliver(api, webhook_secret))["order_id"]
    response = await post_return(
        api, order_id, {"BOOK-DUNE": 1}, resolution="exchange", reason="wrong_item"
    )
    assert response.status_code == 201, response.text
    await carrier(api, webhook_secret, response.json()["tracking_number"], "delivered")

    view = await follow(api, order_id, return_is("RET-1", "exchange_shipped"))
    exchange = a_return(view, "RET-1")["exchange_shipment"]
    tracking = exchange["tracking_number"]
    assert tracking != view["shipments"][0]["tracking_number"]
    assert shipment_order(e2e_stack, tracking) == order_id
    await emailed(e2e_stack, order_id, "exchange_shipped")

    await carrier(api, webhook_secret, tracking, "in_transit")
    await carrier(api, webhook_secret, tracking, "delivered")
    view = await follow(api, order_id, return_is("RET-1", "exchange_delivered"))
    assert a_return(view, "RET-1")["exchange_shipment"]["status"] == "delivered"
    assert view["status"] == "delivered"
    money = ledger(e2e_stack, order_id)
    assert len(money["authorize"]) == len(money["capture"]) == 1  # no charge for the exchange
    assert_ledger(e2e_stack, view, [])


async def test_an_ebook_is_refunded_at_once_and_its_download_link_stops_working(
    api: httpx.AsyncClient, e2e_stack: E2EStack
) -> None:
    order_id = (await place(api, items=[{"sku": "EBOOK-DUNE", "quantity": 1}]))["order_id"]
    await follow(api, order_id, has_status("delivered"))
    await emailed(e2e_stack, order_id, "digital_delivery")
    (email,) = [
        m for m in e2e_stack.smtp.for_order(order_id) if m["X-Ordermill-Kind"] == "digital_delivery"
    ]
    body = email.get_body()
    assert body is not None
    match = re.search(r"https?://\S+?(/downloads/\S+)", body.get_content())
    assert match is not None
    link = match.group(1)

    downloaded = await api.get(link)
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.headers["content-disposition"] == 'attachment; filename="EBOOK-DUNE.txt"'
    assert "Dune (e-book)" in downloaded.text

    response = await post_return(api, order_id, {"EBOOK-DUNE": 1}, reason="not_as_described")
    assert response.status_code == 201, response.text
    ret = response.json()
    assert (ret["status"], ret["digital"], ret["refund_amount"]) == ("refunded", True, EBOOK)
    assert ret["tracking_number"] is None

    problem = assert_problem(await api.get(link), 410)
    assert problem["type"].endswith("/download-revoked")
    view = await follow(api, order_id, has_status("returned"))
    assert_ledger(e2e_stack, view, [EBOOK])


async def test_returns_the_order_cannot_take_are_409_with_its_reason(
    api: httpx.AsyncClient, webhook_secret: str
) -> None:
    items = [{"sku": "BOOK-DUNE", "quantity": 1}, {"sku": "EBOOK-DUNE", "quantity": 1}]
    order_id = (await place(api, items=items))["order_id"]
    shipped = await follow(api, order_id, has_status("shipped"))
    early = assert_problem(await post_return(api, order_id, {"BOOK-DUNE": 1}), 409)
    assert early["detail"] == "only a delivered order can be returned; it is shipped"
    tracking = shipped["shipments"][0]["tracking_number"]
    await carrier(api, webhook_secret, tracking, "delivered")
    await follow(api, order_id, has_status("delivered"))

    refusals = [
        ({"BOOK-DUNE": 2}, "refund", "only 1 of BOOK-DUNE can still be returned, not 2"),
        ({"BOOK-DUNE": 1, "EBOOK-DUNE": 1}, "refund", "return digital and physical items"),
        ({"EBOOK-DUNE": 1}, "exchange", "digital items can be refunded, not exchanged"),
        ({"BOOK-NEUROMANCER": 1}, "refund", "BOOK-NEUROMANCER is not part of this order"),
    ]
    for lines, resolution, reason in refusals:
        problem = assert_problem(await post_return(api, order_id, lines, resolution), 409)
        assert problem["type"].endswith("/return-refused")
        assert problem["title"] == "The return cannot be accepted"
        assert problem["detail"].startswith(reason), problem

    assert (await post_return(api, order_id, {"BOOK-DUNE": 1})).status_code == 201
    twice = assert_problem(await post_return(api, order_id, {"BOOK-DUNE": 1}), 409)
    assert twice["detail"] == "only 0 of BOOK-DUNE can still be returned, not 1"

    invalid = assert_problem(await post_return(api, order_id, {"BOOK-DUNE": 0}, "swap"), 422)
    assert {e["field"] for e in invalid["errors"]} == {"lines[0].quantity", "resolution"}
    view = (await api.get(f"/orders/{order_id}")).json()
    assert [r["return_id"] for r in view["returns"]] == ["RET-1"]


async def test_a_late_return_is_refused_and_an_open_one_holds_the_order_open(
    short_window_api: httpx.AsyncClient, e2e_stack: E2EStack, webhook_secret: str
) -> None:
    api = short_window_api
    items = [{"sku": "BOOK-DUNE", "quantity": 2}]
    view = await deliver(api, webhook_secret, items=items)
    order_id = view["order_id"]
    ret = (await post_return(api, order_id, {"BOOK-DUNE": 1})).json()
    window_ends = datetime.fromisoformat(view["return_window_ends_at"])

    async def now() -> datetime:  # no status marks the window's end: wait out its deadline
        return datetime.now(UTC)

    await eventually(now, lambda t: t > window_ends + timedelta(seconds=1), within=30)

    late = assert_problem(await post_return(api, order_id, {"BOOK-DUNE": 1}), 409)
    assert late["detail"].startswith("the return window closed on ")
    # The window has closed, yet the order waits for the parcel on its way back.
    assert (await api.get(f"/orders/{order_id}")).json()["status"] == "delivered"

    await carrier(api, webhook_secret, ret["tracking_number"], "delivered")
    completed = await follow(api, order_id, has_status("completed"))
    assert a_return(completed, "RET-1")["status"] == "refunded"
    assert_ledger(e2e_stack, completed, [DUNE])
    await e2e_stack.client.get_workflow_handle(f"order-{order_id}").result()

    # Closed: everything is answered from the read model with a 409.
    for path, body in [
        ("returns", {"lines": [{"sku": "BOOK-DUNE", "quantity": 1}], "reason": "other"}),
        ("inquiries", {"message": "Where is my refund?"}),
        ("feedback", {"rating": 2}),
        ("refunds", {"amount": 100, "reason": "sorry"}),
    ]:
        response = await api.post(f"/orders/{order_id}/{path}", json=body, headers=keyed())
        problem = assert_problem(response, 409)
        assert problem["type"].endswith("/order-closed")
        assert problem["detail"] == "the order is closed: it is completed"


async def test_unknown_orders_are_404(api: httpx.AsyncClient) -> None:
    for path, body in [
        ("returns", {"lines": [{"sku": "BOOK-DUNE", "quantity": 1}], "reason": "other"}),
        ("inquiries", {"message": "Hello?"}),
        ("feedback", {"rating": 5}),
        ("refunds", {"amount": 100, "reason": "sorry"}),
    ]:
        response = await api.post(f"/orders/ord_nobody/{path}", json=body, headers=keyed())
        problem = assert_problem(response, 404)
        assert problem["type"].endswith("/order-not-found")


# ---- goodwill refunds ------------------------------------------------------------------------


async def test_goodwill_refunds_stop_at_what_was_captured(
    api: httpx.AsyncClient, e2e_stack: E2EStack, webhook_secret: str
) -> None:
    order_id = (await deliver(api, webhook_secret))["order_id"]
    total = DUNE + STANDARD_SHIPPING

    response = await api.post(
        f"/orders/{order_id}/refunds", json={"amount": 1000, "reason": "late"}, headers=keyed()
    )
    assert response.status_code == 201, response.text
    assert response.json()["refund_id"] == "RF-1"
    assert response.json()["kind"] == "goodwill"
    await emailed(e2e_stack, order_id, "refund_issued")

    too_much = await api.post(
        f"/orders/{order_id}/refunds",
        json={"amount": total, "reason": "everything"},
        headers=keyed(),
    )
    problem = assert_problem(too_much, 409)
    assert problem["type"].endswith("/refund-refused")
    assert problem["detail"] == "at most $13.98 is left to refund"

    # The return of the book is refunded only what is left of the capture.
    label = (await post_return(api, order_id, {"BOOK-DUNE": 1})).json()["tracking_number"]
    await carrier(api, webhook_secret, label, "delivered")
    returned = await follow(api, order_id, has_status("returned"))
    assert a_return(returned, "RET-1")["refund_amount"] == total - 1000
    assert_ledger(e2e_stack, returned, [1000, total - 1000])

    url = f"/orders/{order_id}/refunds"
    nothing_left = await api.post(url, json={"amount": 1, "reason": "x"}, headers=keyed())
    assert assert_problem(nothing_left, 409)["detail"] == "at most $0.00 is left to refund"
    invalid = await api.post(url, json={"amount": 0, "reason": "x"}, headers=keyed())
    assert assert_problem(invalid, 422)["errors"][0]["field"] == "amount"


async def test_racing_refunds_and_a_retried_one_never_refund_twice(
    api: httpx.AsyncClient, e2e_stack: E2EStack, webhook_secret: str
) -> None:
    order_id = (await deliver(api, webhook_secret))["order_id"]
    url = f"/orders/{order_id}/refunds"

    answers = await asyncio.gather(
        *(
            api.post(url, json={"amount": 1500, "reason": f"agent {n}"}, headers=keyed())
            for n in range(3)
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409]

    key = {"Idempotency-Key": "refund-retry-1"}
    first = await api.post(url, json={"amount": 500, "reason": "retried"}, headers=key)
    retry = await api.post(url, json={"amount": 500, "reason": "retried"}, headers=key)
    assert first.status_code == retry.status_code == 201, retry.text
    assert first.json() == retry.json()

    view = (await api.get(f"/orders/{order_id}")).json()
    assert_ledger(e2e_stack, view, [1500, 500])


async def test_returns_and_refunds_need_an_idempotency_key(
    api: httpx.AsyncClient, client_api: httpx.AsyncClient
) -> None:
    order_id = (await place(client_api))["order_id"]
    for who, path, body in [
        (
            client_api,
            "returns",
            {"lines": [{"sku": "BOOK-DUNE", "quantity": 1}], "reason": "other"},
        ),
        (api, "refunds", {"amount": 100, "reason": "sorry"}),
    ]:
        problem = assert_problem(await who.post(f"/orders/{order_id}/{path}", json=body), 400)
        assert problem["type"].endswith("/idempotency-key-required")
        assert "Idempotency-Key" in problem["detail"]
    view = (await api.get(f"/orders/{order_id}")).json()
    assert view["returns"] == [] and view["refunds"] == []


async def test_a_key_reused_for_another_refund_is_409_and_refunds_once(
    api: httpx.AsyncClient, e2e_stack: E2EStack, webhook_secret: str
) -> None:
    order_id = (await deliver(api, webhook_secret))["order_id"]
    url = f"/orders/{order_id}/refunds"
    key = keyed()
    first = await api.post(url, json={"amount": 300, "reason": "late"}, headers=key)
    assert first.status_code == 201, first.text
    changed = await api.post(url, json={"amount": 900, "reason": "late"}, headers=key)
    problem = assert_problem(changed, 409)
    assert problem["type"].endswith("/idempotency-key-reused")
    # The same key on another endpoint is another request too.
    elsewhere = await api.post(
        f"/orders/{order_id}/inquiries", json={"message": "late?"}, headers=key
    )
    assert assert_problem(elsewhere, 409)["type"].endswith("/idempotency-key-reused")
    replay = await api.post(url, json={"amount": 300, "reason": "late"}, headers=key)
    assert replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    view = (await api.get(f"/orders/{order_id}")).json()
    assert_ledger(e2e_stack, view, [300])


async def test_return_lines_adding_up_past_the_bound_are_refused_not_500(
    api: httpx.AsyncClient, webhook_secret: str
) -> None:
    order_id = (await deliver(api, webhook_secret))["order_id"]
    over = assert_problem(
        await post_return(api, order_id, [("BOOK-DUNE", 999), ("BOOK-DUNE", 2)]), 409
    )
    assert over["type"].endswith("/return-refused")
    assert "BOOK-DUNE" in over["detail"] and "1001" in over["detail"]
    unknown = assert_problem(
        await post_return(api, order_id, [("BOOK-NOPE", 600), ("BOOK-NOPE", 600)]), 409
    )
    assert unknown["type"].endswith("/return-refused")
    assert "BOOK-NOPE" in unknown["detail"]


# ---- inquiries and feedback ------------------------------------------------------------------


async def test_an_inquiry_is_emailed_to_support_and_feedback_is_taken_once(
    api: httpx.AsyncClient, e2e_stack: E2EStack, webhook_secret: str
) -> None:
    order_id = (await place(api))["order_id"]
    await follow(api, order_id, has_status("shipped"))
    early = assert_problem(await api.post(f"/orders/{order_id}/feedback", json={"rating": 5}), 409)
    assert early["detail"] == "feedback opens once the order is delivered"

    response = await api.post(
        f"/orders/{order_id}/inquiries", json={"message": "Can you gift-wrap it?"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["inquiry_id"] == "Q-1"
    await emailed(e2e_stack, order_id, "support_inquiry")
    (mail,) = [
        m for m in e2e_stack.smtp.for_order(order_id) if m["X-Ordermill-Kind"] == "support_inquiry"
    ]
    assert mail["To"] == e2e_stack.settings.support_email
    assert mail["Reply-To"] == "ada@example.com"
    content = mail.get_body()
    assert content is not None and "Can you gift-wrap it?" in content.get_content()

    view = await follow(api, order_id, has_status("shipped"))
    tracking = view["shipments"][0]["tracking_number"]
    await carrier(api, webhook_secret, tracking, "delivered")
    await follow(api, order_id, has_status("delivered"))

    rated = await api.post(
        f"/orders/{order_id}/feedback", json={"rating": 5, "comment": "Arrived quickly."}
    )
    assert rated.status_code == 201, rated.text
    assert (rated.json()["rating"], rated.json()["comment"]) == (5, "Arrived quickly.")
    again = assert_problem(await api.post(f"/orders/{order_id}/feedback", json={"rating": 1}), 409)
    assert again["type"].endswith("/feedback-refused")
    out_of_range = await api.post(f"/orders/{order_id}/feedback", json={"rating": 6})
    assert assert_problem(out_of_range, 422)["errors"][0]["field"] == "rating"

    view = (await api.get(f"/orders/{order_id}")).json()
    assert view["feedback"]["rating"] == 5
    assert [q["message"] for q in view["inquiries"]] == ["Can you gift-wrap it?"]
    assert "inquiry" in [entry["event"] for entry in view["timeline"]]


async def test_every_body_has_openapi_examples(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    for path in ("returns", "inquiries", "feedback", "refunds"):
        body = spec["paths"][f"/orders/{{order_id}}/{path}"]["post"]["requestBody"]
        assert body["content"]["application/json"]["examples"], path
