"""A placeholder-free smoke check that the shared e2e stack processes an order."""

from datetime import UTC, datetime, timedelta

from models.orders import (
    CarrierEvent,
    CarrierStatus,
    OrderItem,
    OrderStatus,
    OrderTimeouts,
    OrderView,
    PaymentMethod,
    PlaceOrderInput,
)
from models.wire import QUERY_STATUS, SIGNAL_CARRIER_EVENT
from temporal_client import start_order
from tests.conftest import E2EStack, eventually, new_id


async def test_physical_order_ships_and_is_delivered(e2e_stack: E2EStack) -> None:
    order_id = new_id("smoke")
    handle = await start_order(
        e2e_stack.client,
        PlaceOrderInput(
            order_id=order_id,
            customer_id="cus_ada",
            items=[OrderItem(sku="BOOK-DUNE", quantity=1)],
            payment=PaymentMethod(token="tok_visa"),
            placed_at=datetime.now(UTC),
            timeouts=OrderTimeouts(return_window=timedelta(seconds=1)),
        ),
    )

    async def status() -> OrderView:
        return await handle.query(QUERY_STATUS, result_type=OrderView)

    shipped = await eventually(status, lambda v: v.status == OrderStatus.SHIPPED)
    assert shipped.shipment is not None
    await handle.signal(
        SIGNAL_CARRIER_EVENT,
        CarrierEvent(
            event_id="evt-1",
            tracking_number=shipped.shipment.tracking_number,
            status=CarrierStatus.DELIVERED,
            occurred_at=datetime.now(UTC),
        ),
    )
    final = await handle.result()
    assert final.status == OrderStatus.COMPLETED
    assert final.payment.captured == final.payment.authorized == 1899 + 499
    assert e2e_stack.smtp.kinds_for(order_id) == ["confirmation", "shipped", "delivered"]
