"""An order's whole trip through the API: placed, shipped, tracked by signed webhooks, delivered."""

import httpx
from sqlmodel import Session, select
from temporalio.client import WorkflowExecutionStatus

from models.tables import CarrierWebhookReceipt, ShipmentEvent
from tests.api.conftest import (
    assert_problem,
    carrier_event,
    follow,
    has_status,
    order_body,
    post_event,
)
from tests.conftest import E2EStack, eventually


async def test_place_ship_track_and_deliver(
    api: httpx.AsyncClient, e2e_stack: E2EStack, webhook_secret: str
) -> None:
    placed = await api.post("/orders", json=order_body(delivery="express"))
    assert placed.status_code == 202, placed.text
    view = placed.json()
    order_id = view["order_id"]
    assert placed.headers["location"] == f"/orders/{order_id}"
    assert view["status"] in {"received", "confirmed", "fulfilling"}
    assert view["customer_id"] == "cus_ada"
    assert view["items"] == [{"sku": "BOOK-DUNE", "quantity": 1}]

    shipped = await follow(api, order_id, has_status("shipped"))
    assert shipped["totals"]["total"] == 1899 + 1499
    assert shipped["payment"]["captured"] == shipped["totals"]["total"]
    tracking = shipped["shipments"][0]["tracking_number"]

    # Each event shows once the worker has applied it and recorded the order.
    in_transit = carrier_event(tracking, "in_transit", description="left the depot")
    response = await post_event(api, in_transit, webhook_secret)
    assert response.status_code == 200, response.text
    assert response.json() == {"event_id": in_transit["event_id"], "outcome": "signalled"}
    view = await follow(api, order_id, lambda v: v["shipments"][0]["status"] == "in_transit")
    assert view["status"] == "shipped"

    delivered = carrier_event(tracking, "delivered")
    response = await post_event(api, delivered, webhook_secret)
    assert response.json()["outcome"] == "signalled"
    view = await follow(api, order_id, has_status("delivered"))
    assert view["delivered_at"] is not None
    assert [e["event_id"] for e in view["shipments"][0]["events"]] == [
        in_transit["event_id"],
        delivered["event_id"],
    ]

    # The carrier redelivers an event: acknowledged, nothing changes.
    again = await post_event(api, delivered, webhook_secret)
    assert again.status_code == 200
    assert again.json()["outcome"] == "duplicate"
    assert (await api.get(f"/orders/{order_id}")).json()["shipments"][0]["events"] == view[
        "shipments"
    ][0]["events"]

    with Session(e2e_stack.engine) as session:
        receipts = session.exec(
            select(CarrierWebhookReceipt).where(CarrierWebhookReceipt.order_id == order_id)
        ).all()
    assert sorted(r.outcome for r in receipts) == ["signalled", "signalled"]

    async def emails() -> list[str]:  # the delivered email follows the status by a moment
        return e2e_stack.smtp.kinds_for(order_id)

    await eventually(emails, lambda kinds: "delivered" in kinds)


async def test_event_for_a_closed_order_is_recorded_and_acknowledged(
    api: httpx.AsyncClient, e2e_stack: E2EStack, webhook_secret: str
) -> None:
    order_id = (await api.post("/orders", json=order_body())).json()["order_id"]
    tracking = (await follow(api, order_id, has_status("shipped")))["shipments"][0][
        "tracking_number"
    ]
    failure = carrier_event(tracking, "failure", description="address not found")
    assert (await post_event(api, failure, webhook_secret)).status_code == 200
    failed = await follow(api, order_id, has_status("delivery_failed"))
    assert failed["payment"]["refunded"] == failed["payment"]["captured"]

    async def workflow_status() -> WorkflowExecutionStatus | None:
        return (await e2e_stack.client.get_workflow_handle(f"order-{order_id}").describe()).status

    await eventually(workflow_status, lambda s: s is WorkflowExecutionStatus.COMPLETED)

    late = carrier_event(tracking, "delivered", description="found it after all")
    response = await post_event(api, late, webhook_secret)
    assert response.status_code == 200, response.text
    assert response.json() == {"event_id": late["event_id"], "outcome": "order_closed"}
    # Still answered from the read model, unchanged by the late event.
    assert (await api.get(f"/orders/{order_id}")).json()["status"] == "delivery_failed"
    with Session(e2e_stack.engine) as session:
        receipt = session.get(
            CarrierWebhookReceipt, ("simulated-carrier", late["tracking_number"], late["event_id"])
        )
        recorded = session.exec(
            select(ShipmentEvent).where(ShipmentEvent.event_id == late["event_id"])
        ).first()
    assert receipt is not None and receipt.outcome == "order_closed"
    assert recorded is not None and recorded.tracking_number == tracking

    duplicate = await post_event(api, late, webhook_secret)
    assert duplicate.json()["outcome"] == "duplicate"


async def test_unknown_order_is_404(api: httpx.AsyncClient) -> None:
    problem = assert_problem(await api.get("/orders/ord_doesnotexist"), 404)
    assert problem["type"].endswith("/order-not-found")
    assert problem["instance"] == "/orders/ord_doesnotexist"
