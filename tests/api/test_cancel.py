"""POST /orders/{id}/cancel: the workflow's cancel Update, mapped to 200, 409 and 404."""

import httpx
from sqlmodel import Session, select

from models.tables import StockReservation
from tests.api.conftest import assert_problem, follow, has_status, place
from tests.conftest import E2EStack, eventually


async def test_cancel_right_after_placing(api: httpx.AsyncClient, e2e_stack: E2EStack) -> None:
    order_id = (await place(api))["order_id"]
    response = await api.post(f"/orders/{order_id}/cancel", json={"reason": "changed my mind"})
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "cancelled"
    assert view["reason"] == {"code": "cancelled", "detail": "changed my mind"}
    assert view["payment"]["captured"] == 0

    # Asking again (the workflow has closed by now) answers the same cancelled order.
    handle = e2e_stack.client.get_workflow_handle(f"order-{order_id}")
    await handle.result()
    again = await api.post(f"/orders/{order_id}/cancel")
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    assert (await api.get(f"/orders/{order_id}")).json()["status"] == "cancelled"
    assert "cancelled" in e2e_stack.smtp.kinds_for(order_id)


async def test_cancel_while_picking_voids_the_card_and_releases_stock(
    api: httpx.AsyncClient, e2e_stack: E2EStack
) -> None:
    order_id = (await place(api))["order_id"]
    await follow(api, order_id, has_status("fulfilling"))  # picking takes a second here
    response = await api.post(f"/orders/{order_id}/cancel")
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "cancelled"
    assert view["payment"]["voided"] is True
    assert view["payment"]["captured"] == 0

    async def holds() -> list[str]:
        with Session(e2e_stack.engine) as session:
            return list(
                session.exec(
                    select(StockReservation.status).where(StockReservation.order_id == order_id)
                )
            )

    assert await eventually(holds, bool) == ["released"]


async def test_cancel_after_shipping_is_409_with_the_reason(api: httpx.AsyncClient) -> None:
    order_id = (await place(api))["order_id"]
    await follow(api, order_id, has_status("shipped"))
    problem = assert_problem(await api.post(f"/orders/{order_id}/cancel"), 409)
    assert problem["type"].endswith("/cancel-refused")
    assert "can no longer be cancelled" in problem["detail"]
    assert (await api.get(f"/orders/{order_id}")).json()["status"] == "shipped"


async def test_cancel_a_finished_order_is_409(api: httpx.AsyncClient, e2e_stack: E2EStack) -> None:
    order_id = (await place(api, payment={"token": "tok_chargeDeclined"}))["order_id"]
    await e2e_stack.client.get_workflow_handle(f"order-{order_id}").result()
    problem = assert_problem(await api.post(f"/orders/{order_id}/cancel"), 409)
    assert "payment_declined" in problem["detail"]


async def test_cancel_unknown_order_is_404(api: httpx.AsyncClient) -> None:
    assert_problem(await api.post("/orders/ord_nobody/cancel"), 404)


async def test_cancel_with_an_invalid_reason_is_422(api: httpx.AsyncClient) -> None:
    order_id = (await place(api))["order_id"]
    problem = assert_problem(
        await api.post(f"/orders/{order_id}/cancel", json={"reason": "x" * 201}), 422
    )
    assert problem["errors"][0]["field"] == "reason"
