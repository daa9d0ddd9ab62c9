"""Operators' decisions on holds over HTTP, end to end.

The card `tok_captureDeclined` authorizes and then declines every capture (the simulated
processor's test card), so the order waits in a `capture_declined` hold: a real worker, a
real dev server, the operator's routes as a client would call them.
"""

from typing import Any

import httpx
from sqlmodel import Session, select

from models.tables import PaymentTransaction
from tests.api.conftest import assert_problem, follow, has_status, place
from tests.conftest import E2EStack


def hold_open(hold_id: str) -> Any:
    return lambda view: any(
        h["hold_id"] == hold_id and h["resolution"] is None for h in view["holds"]
    )


async def held_order(api: httpx.AsyncClient) -> str:
    order_id: str = (await place(api, payment={"token": "tok_captureDeclined"}))["order_id"]
    view = await follow(api, order_id, hold_open("capture_declined"))
    # The parcel was booked before its capture: after that hand-over a hold stops nothing.
    assert view["status"] != "on_hold"
    assert view["shipments"][0]["tracking_number"]
    return order_id


async def test_an_operator_releases_then_rejects_a_declined_capture(
    api: httpx.AsyncClient, e2e_stack: E2EStack
) -> None:
    order_id = await held_order(api)

    released = await api.post(
        f"/orders/{order_id}/holds/capture_declined/release",
        json={"reason": "customer says the card works now"},
    )
    assert released.status_code == 200, released.text
    (first, *_) = released.json()["holds"]
    assert (first["hold_id"], first["resolution"]) == ("capture_declined", "released")

    # Tried again under a new key, declined again: a second hold of the same code.
    await follow(api, order_id, hold_open("capture_declined-2"))
    rejected = await api.post(
        f"/orders/{order_id}/holds/capture_declined-2/reject",
        json={"reason": "card closed; written off"},
    )
    assert rejected.status_code == 200, rejected.text
    view = rejected.json()
    assert [h["resolution"] for h in view["holds"]] == ["released", "rejected"]
    assert view["payment"]["written_off"] == view["payment"]["authorized"]
    assert view["payment"]["captured"] == 0
    await follow(api, order_id, has_status("shipped"))  # the order goes on

    with Session(e2e_stack.engine) as session:
        captures = session.exec(
            select(PaymentTransaction).where(
                PaymentTransaction.order_id == order_id, PaymentTransaction.kind == "capture"
            )
        ).all()
    assert captures == []  # declines leave no row: nothing was taken


async def test_hold_decisions_refused_with_the_reason(
    api: httpx.AsyncClient, client_api: httpx.AsyncClient
) -> None:
    order_id = await held_order(client_api)  # the client's own order
    base = f"/orders/{order_id}/holds"

    assert_problem(await api.post(f"{base}/capture_declined/reject", json={}), 422)
    assert_problem(
        await api.post(f"{base}/capture_declined/reject", json={"reason": "a\x00b"}), 422
    )
    unknown = assert_problem(await api.post(f"{base}/refund_refused/release"), 404)
    assert "refund_refused" in unknown["detail"]
    assert_problem(await api.post(f"{base}/Not A Hold/release"), 422)
    assert_problem(await api.post("/orders/ord_nosuchorder/holds/capture_declined/release"), 404)

    # Holds are the operators' to decide, even on a client's own order.
    assert_problem(await client_api.post(f"{base}/capture_declined/release"), 403)

    decided = await api.post(f"{base}/capture_declined/reject", json={"reason": "written off"})
    assert decided.status_code == 200, decided.text
    again = assert_problem(await api.post(f"{base}/capture_declined/release"), 409)
    assert "already rejected" in again["detail"]


async def test_a_retried_decision_with_its_key_is_taken_once(api: httpx.AsyncClient) -> None:
    order_id = await held_order(api)
    path = f"/orders/{order_id}/holds/capture_declined/reject"
    body = {"reason": "written off"}
    headers = {"Idempotency-Key": f"decide-{order_id}"}

    first = await api.post(path, json=body, headers=headers)
    second = await api.post(path, json=body, headers=headers)
    assert first.status_code == second.status_code == 200, second.text
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert [h["hold_id"] for h in second.json()["holds"]] == ["capture_declined"]
