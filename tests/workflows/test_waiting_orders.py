"""Orders that wait: a risk review by an operator, the backorder queue, and the card
authorization renewed while they wait. On the time-skipping server with fakes: days pass in
moments, and the fake processor lets authorizations lapse by the server's clock."""

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowUpdateFailedError

from models.activities import EmailKind, ReceiveStockInput, StockReceiptResult
from models.holds import HoldCode, HoldResolution
from models.orders import AuthorizationStatus, OrderStatus, OrderTimeouts, OrderView
from models.shipments import CarrierStatus
from models.wire import ORDER_HOLDS
from tests.conftest import new_id, start_time_skipping
from tests.fakes import FakeOrderSystems, fake_worker
from tests.workflows.conftest import OrderUnderTest, _terminate_when_quiet
from workflows.stock_receipt import StockReceiptWorkflow

FIRST_EDITION, PREORDER, SHIPPING = 120000, 2499, 499


async def open_holds(order: OrderUnderTest) -> list[str]:
    described = await order.handle.describe()
    return list(described.typed_search_attributes.get(ORDER_HOLDS) or [])


async def receive(order: OrderUnderTest, sku: str, add: int) -> StockReceiptResult:
    """A stock receipt, as POST /products/{sku}/stock starts it."""
    return await order.env.client.execute_workflow(
        StockReceiptWorkflow.run,
        ReceiveStockInput(receipt_id=new_id("rcpt"), sku=sku, warehouse="WH-EAST", add=add),
        id=new_id("stock-receipt"),
        task_queue=order.task_queue,
    )


@pytest.fixture
async def lone_order() -> AsyncIterator[OrderUnderTest]:
    """An order on a time-skipping server of its own: weeks of skipped timers with renewals
    in between, unaffected by what earlier tests left on the shared server."""
    env = await start_time_skipping()
    fakes = FakeOrderSystems()
    try:
        async with fake_worker(env.client, fakes) as task_queue:
            yield OrderUnderTest(env=env, fakes=fakes, task_queue=task_queue)
    finally:
        await env.shutdown()


@pytest.fixture
async def others(order: OrderUnderTest) -> AsyncIterator[list[OrderUnderTest]]:
    """More orders on the same fakes and worker: the ones queued behind `order`."""
    siblings = [
        OrderUnderTest(env=order.env, fakes=order.fakes, task_queue=order.task_queue)
        for _ in range(2)
    ]
    try:
        yield siblings
    finally:
        for sibling in siblings:
            if sibling._handle is not None:
                await _terminate_when_quiet(sibling._handle)


async def current_details(order: OrderUnderTest) -> str:
    metadata = await order.handle.query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return metadata.current_details


# ---- risk review -----------------------------------------------------------------------------


async def test_a_large_order_waits_for_review_and_a_release_ships_it(
    order: OrderUnderTest,
) -> None:
    await order.start({"BOOK-FIRST-EDITION": 1})
    held = await order.hold("risk_review")

    (hold,) = held.holds
    assert hold.code is HoldCode.RISK_REVIEW and "$1,204.99" in hold.detail
    assert held.status is OrderStatus.ON_HOLD
    assert held.payment.authorized == FIRST_EDITION + SHIPPING  # authorized before the review
    assert "pick_and_pack" not in order.fakes.names()  # nothing is picked while held
    assert await open_holds(order) == ["risk_review"]
    assert order.fakes.sent()[-1].kind is EmailKind.HOLD_PLACED  # to the support mailbox
    details = await current_details(order)  # what the Temporal UI shows an operator
    shown = hold.detail.replace("$", "\\$")  # escaped, or the UI typesets it as math
    assert "**on_hold**" in details and f"hold `risk_review`: {shown}" in details

    await order.resolve("risk_review", HoldResolution.RELEASED, "known collector")
    shipped = await order.wait_for(OrderStatus.SHIPPED)
    assert shipped.payment.captured == FIRST_EDITION + SHIPPING
    assert await open_holds(order) == []


async def test_a_flagged_customer_s_order_is_reviewed_and_a_reject_cancels_it(
    order: OrderUnderTest,
) -> None:
    await order.start({"BOOK-DUNE": 1}, customer_id="cus_newbie")
    held = await order.hold("risk_review")
    assert "reviewed" in held.holds[0].detail

    await order.resolve("risk_review", HoldResolution.REJECTED, "card testing pattern")
    result = await order.result()

    assert result.status is OrderStatus.CANCELLED
    assert result.reason is not None and "card testing pattern" in result.reason.detail
    assert result.payment.voided and result.payment.released == result.payment.authorized
    assert order.fakes.held.get(order.order_id, {}) == {}  # stock given back
    assert order.fakes.emails()[-1] is EmailKind.CANCELLED
    assert "pick_and_pack" not in order.fakes.names()


async def test_a_review_nobody_decides_cancels_the_order_after_the_review_timeout(
    order: OrderUnderTest,
) -> None:
    await order.start({"BOOK-FIRST-EDITION": 1})
    await order.hold("risk_review")

    result = await order.result()  # the server skips the three days

    assert result.status is OrderStatus.CANCELLED
    assert result.reason is not None and result.reason.detail == "review_timeout"
    (hold,) = result.holds
    assert (hold.resolution, hold.timed_out) == (HoldResolution.REJECTED, True)
    assert hold.resolved_at is not None and hold.resolved_at - hold.placed_at >= timedelta(days=3)
    assert result.payment.voided


async def test_a_cancel_during_the_review_cancels_at_once(order: OrderUnderTest) -> None:
    await order.start({"BOOK-FIRST-EDITION": 1})
    await order.hold("risk_review")

    cancelled = await order.cancel("changed my mind")

    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.reason is not None and cancelled.reason.detail == "changed my mind"
    assert cancelled.holds[0].resolution is HoldResolution.REJECTED
    assert cancelled.payment.voided


# ---- backorders ------------------------------------------------------------------------------


async def test_a_short_backorderable_line_waits_authorized_and_confirmed(
    order: OrderUnderTest,
) -> None:
    await order.start({"BOOK-PREORDER": 1})
    waiting = await order.wait_for(OrderStatus.BACKORDERED)

    assert waiting.backordered == ["BOOK-PREORDER"]
    assert waiting.payment.authorized == PREORDER + SHIPPING
    assert [h.code for h in waiting.holds] == [HoldCode.BACKORDER]
    assert "BOOK-PREORDER" in waiting.holds[0].detail
    assert EmailKind.CONFIRMATION in order.fakes.emails()
    assert EmailKind.HOLD_PLACED not in order.fakes.emails()  # nobody has to act on it
    assert await open_holds(order) == ["backorder"]
    assert "pick_and_pack" not in order.fakes.names()

    # Only stock arriving releases a backorder; an operator may reject it (cancel) only.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await order.resolve("backorder", HoldResolution.RELEASED)
    assert "released when its stock arrives" in str(refused.value.cause)


async def test_fewer_units_than_orders_waiting_go_to_the_oldest_orders_whole(
    order: OrderUnderTest, others: list[OrderUnderTest]
) -> None:
    first, (second, third) = order, others
    await first.start({"BOOK-PREORDER": 2})
    await first.wait_for(OrderStatus.BACKORDERED)
    # A later order of one unit must not take the units the older order of two waits for.
    await second.start({"BOOK-PREORDER": 1})
    await second.wait_for(OrderStatus.BACKORDERED)
    await third.start({"BOOK-PREORDER": 1})
    await third.wait_for(OrderStatus.BACKORDERED)

    one = await receive(order, "BOOK-PREORDER", 1)
    assert one.filled == []  # the oldest needs two: the others wait behind it

    three = await receive(order, "BOOK-PREORDER", 2)
    assert [f.order_id for f in three.filled] == [first.order_id, second.order_id]

    shipped = await first.wait_for(OrderStatus.SHIPPED)
    assert shipped.backordered == [] and shipped.holds[0].resolution is HoldResolution.RELEASED
    assert shipped.shipments[0].lines[0].quantity == 2
    await second.wait_for(OrderStatus.SHIPPED)
    still = await third.view()
    assert still.status is OrderStatus.BACKORDERED

    await receive(order, "BOOK-PREORDER", 1)
    await third.wait_for(OrderStatus.SHIPPED)


async def test_a_backorder_not_filled_in_time_is_cancelled(order: OrderUnderTest) -> None:
    await order.start({"BOOK-PREORDER": 1})
    await order.wait_for(OrderStatus.BACKORDERED)

    result = await order.result()

    assert result.status is OrderStatus.CANCELLED
    assert result.reason is not None and result.reason.detail == "backorder_timeout"
    assert result.payment.voided
    assert order.order_id not in order.fakes.backorders  # out of the queue
    assert order.fakes.emails()[-1] is EmailKind.CANCELLED


async def test_a_cancel_while_backordered_leaves_the_queue(
    order: OrderUnderTest, others: list[OrderUnderTest]
) -> None:
    await order.start({"BOOK-PREORDER": 1})
    await order.wait_for(OrderStatus.BACKORDERED)
    behind = others[0]
    await behind.start({"BOOK-PREORDER": 1})
    await behind.wait_for(OrderStatus.BACKORDERED)

    cancelled = await order.cancel()
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.payment.voided

    receipt = await receive(order, "BOOK-PREORDER", 1)
    assert [f.order_id for f in receipt.filled] == [behind.order_id]  # skipped the cancelled
    await behind.wait_for(OrderStatus.SHIPPED)


# ---- the authorization, renewed while the order waits ------------------------------------------


def _long_backorder() -> OrderTimeouts:
    return OrderTimeouts(backorder_timeout=timedelta(days=45))


async def test_forty_days_of_backorder_renew_the_authorization_and_capture_once(
    lone_order: OrderUnderTest,
) -> None:
    order = lone_order
    await order.start({"BOOK-PREORDER": 1}, timeouts=_long_backorder())
    await order.wait_for(OrderStatus.BACKORDERED)

    for _ in range(10):  # four days at a time: one long skip outlives the RPC's deadline
        await order.env.sleep(timedelta(days=4))
    waiting = await order.view()
    await receive(order, "BOOK-PREORDER", 1)
    shipped = await order.wait_for(OrderStatus.SHIPPED)

    authorizations = shipped.payment.authorizations
    # Valid 7 days, renewed a day before: at days 6, 12, 18, 24, 30 and 36.
    assert len(authorizations) == 7
    assert [a.status for a in authorizations[:-1]] == [AuthorizationStatus.VOIDED] * 6
    assert authorizations[-1].status is AuthorizationStatus.CAPTURED
    assert waiting.payment.authorization_id == authorizations[-1].authorization_id
    (capture,) = order.fakes.succeeded("capture_payment")
    assert capture.arg.authorization_id == authorizations[-1].authorization_id
    assert shipped.payment.captures[0].authorization_id == authorizations[-1].authorization_id
    # Each renewal voided the authorization it replaced, never the new one.
    voided = {f"auth-{v.authorize_key}" for v in order.fakes.called("void_payment")}
    assert voided == {a.authorization_id for a in authorizations[:-1]}
    events = [entry.event for entry in shipped.timeline]
    assert events.count("authorization_renewed") == 6
    assert events.count("authorization_voided") == 6
    assert shipped.payment.captured == shipped.payment.authorized == PREORDER + SHIPPING


async def test_a_declined_renewal_ends_the_order_payment_declined(order: OrderUnderTest) -> None:
    order.fakes.decline_authorizations_from = 2  # the first renewal is declined
    await order.start({"BOOK-PREORDER": 1}, timeouts=_long_backorder())
    await order.wait_for(OrderStatus.BACKORDERED)

    result = await order.result()

    assert result.status is OrderStatus.PAYMENT_DECLINED
    assert result.reason is not None and result.reason.code == "card_declined"
    (authorization,) = result.payment.authorizations
    assert authorization.status is AuthorizationStatus.VOIDED
    assert result.payment.voided
    assert order.order_id not in order.fakes.backorders
    assert order.fakes.emails()[-1] is EmailKind.PAYMENT_DECLINED
    assert "authorization_renewal_declined" in [entry.event for entry in result.timeline]


async def test_a_delivered_backorder_completes_like_any_order(order: OrderUnderTest) -> None:
    await order.start({"BOOK-PREORDER": 1, "BOOK-DUNE": 1})
    waiting: OrderView = await order.wait_for(OrderStatus.BACKORDERED)
    assert waiting.backordered == ["BOOK-PREORDER"]
    await receive(order, "BOOK-PREORDER", 5)
    await order.wait_for(OrderStatus.SHIPPED)
    await order.carrier(CarrierStatus.DELIVERED, "evt-1")
    delivered = await order.wait_for(OrderStatus.DELIVERED)
    assert [line.sku for line in delivered.shipments[0].lines] == ["BOOK-PREORDER", "BOOK-DUNE"]
