"""Orders that wait, over HTTP against the real dev server and worker: the review queue, an
operator's release and reject, a client refused, and a stock receipt waking the right orders
in the right order."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlmodel import Session

from models.tables import OrderHold, Product
from tests.api.conftest import assert_problem, follow, has_status, place
from tests.conftest import E2EStack, eventually, new_id


def held(code: str) -> Any:
    return lambda view: any(h["code"] == code and h["resolution"] is None for h in view["holds"])


async def queue(api: httpx.AsyncClient, code: str, **params: str) -> list[str]:
    """Every order id in a hold's queue, two to a page, so the cursor is followed."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await api.get(
            "/orders",
            params={"hold": code, "limit": "2", **params, **({"cursor": cursor} if cursor else {})},
        )
        assert page.status_code == 200, page.text
        body = page.json()
        ids += [item["order_id"] for item in body["items"]]
        assert all(code in item["holds"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


async def test_the_review_queue_and_an_operator_s_decisions(
    api: httpx.AsyncClient, client_api: httpx.AsyncClient
) -> None:
    # Held for its total, and (placed by a client) for its customer.
    first = (await place(api, items=[{"sku": "BOOK-FIRST-EDITION", "quantity": 1}]))["order_id"]
    await follow(api, first, held("risk_review"))
    second = (await place(client_api, customer_id="cus_newbie"))["order_id"]
    waiting = await follow(api, second, held("risk_review"))
    assert waiting["status"] == "on_hold" and waiting["payment"]["authorized"] > 0
    assert waiting["shipments"][0]["tracking_number"] is None  # nothing picked while held

    async def both_listed() -> list[str]:
        return [o for o in await queue(api, "risk_review") if o in (first, second)]

    # Oldest hold first, across pages; narrowed to one customer; operators only.
    assert await eventually(both_listed, lambda ids: len(ids) == 2) == [first, second]
    newbie = await queue(api, "risk_review", customer_id="cus_newbie")
    assert second in newbie and first not in newbie
    assert_problem(await client_api.get("/orders", params={"hold": "risk_review"}), 403)
    assert_problem(
        await client_api.post(f"/orders/{second}/holds/risk_review/release", json={}), 403
    )
    assert (await client_api.get(f"/orders/{second}")).json()["status"] == "on_hold"

    released = await api.post(
        f"/orders/{first}/holds/risk_review/release", json={"reason": "known collector"}
    )
    assert released.status_code == 200, released.text
    assert_problem(await api.post(f"/orders/{second}/holds/risk_review/reject", json={}), 422)
    rejected = await api.post(
        f"/orders/{second}/holds/risk_review/reject", json={"reason": "card testing"}
    )
    assert rejected.status_code == 200, rejected.text
    await follow(api, first, has_status("shipped"))
    cancelled = await follow(client_api, second, has_status("cancelled"))
    assert cancelled["payment"]["voided"]
    assert cancelled["reason"]["detail"] == "risk_review rejected: card testing"
    assert not {first, second} & set(await queue(api, "risk_review"))


async def test_a_stock_receipt_wakes_the_oldest_backorders_first(
    api: httpx.AsyncClient, client_api: httpx.AsyncClient, e2e_stack: E2EStack
) -> None:
    # A product of its own, so no other test's backorders queue before ours.
    sku = new_id("PRE").upper()
    with Session(e2e_stack.engine) as session:
        session.add(Product(sku=sku, name="Forthcoming", price=1999, backorderable=True))
        session.commit()
    products = {p["sku"]: p for p in (await api.get("/products")).json()}
    assert products[sku]["backorderable"] and products[sku]["available"] == 0
    orders = []
    for _ in range(3):
        order_id = (await place(client_api, items=[{"sku": sku, "quantity": 1}]))["order_id"]
        view = await follow(client_api, order_id, has_status("backordered"))
        assert view["backordered"] == [sku] and view["payment"]["authorized"] > 0
        orders.append(order_id)

    key = new_id("rcpt")
    body = {"warehouse": "WH-EAST", "add": 2}
    keyed = {"Idempotency-Key": key}
    assert_problem(await client_api.post(f"/products/{sku}/stock", json=body, headers=keyed), 403)
    assert_problem(await api.post(f"/products/{sku}/stock", json=body), 400)
    assert_problem(await api.post("/products/BOOK-NOPE/stock", json=body, headers=keyed), 404)
    unknown_warehouse = {"warehouse": "WH-MOON", "add": 2}
    assert_problem(
        await api.post(f"/products/{sku}/stock", json=unknown_warehouse, headers=keyed), 404
    )
    assert_problem(await api.post("/products/EBOOK-DUNE/stock", json=body, headers=keyed), 409)
    too_many = {"warehouse": "WH-EAST", "add": 100_001}
    problem = assert_problem(
        await api.post(f"/products/{sku}/stock", json=too_many, headers=keyed), 422
    )
    assert problem["errors"][0]["field"] == "add"

    received = await api.post(f"/products/{sku}/stock", json=body, headers=keyed)
    assert received.status_code == 200, received.text
    receipt = received.json()
    assert receipt["added"] == 2 and receipt["filled_orders"] == orders[:2]
    assert receipt["product"]["stock"] == [{"warehouse": "WH-EAST", "available": 0, "on_hand": 2}]
    replay = await api.post(f"/products/{sku}/stock", json=body, headers=keyed)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json()["filled_orders"] == orders[:2]  # the same receipt, not two
    assert replay.json()["product"]["stock"][0]["on_hand"] == 2

    for order_id in orders[:2]:
        await follow(client_api, order_id, has_status("shipped"))
    still = (await client_api.get(f"/orders/{orders[2]}")).json()
    assert still["status"] == "backordered"
    cancelled = await client_api.post(f"/orders/{orders[2]}/cancel", json={})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["payment"]["voided"]


async def test_an_order_with_two_open_holds_of_one_code_is_listed_once(
    api: httpx.AsyncClient, e2e_stack: E2EStack
) -> None:
    """Two parcels' captures declined at once: the order is in that queue once, at the
    longest-waiting of its holds."""
    order_id = (await place(api))["order_id"]
    await follow(api, order_id, has_status("shipped"))
    code = "capture_declined"
    first = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # older than any real hold: first in line
    with Session(e2e_stack.engine) as session:
        for n, minutes in enumerate([5, 0, 10], start=1):
            session.add(
                OrderHold(
                    order_id=order_id,
                    hold_id=f"{code}-{n}",
                    code=code,
                    placed_at=first + timedelta(minutes=minutes),
                    resolved_at=first if n == 3 else None,  # a resolved one is history
                )
            )
        session.commit()

    page = await api.get("/orders", params={"hold": code, "limit": "100"})
    assert page.status_code == 200, page.text
    ids = [item["order_id"] for item in page.json()["items"]]
    assert ids.count(order_id) == 1 and ids[0] == order_id
