"""The bench's yardstick for the worker (bench/steps.py) takes a bench order's steps as
OrderWorkflow takes them: the same local and remote activities and signal, in the same order,
with the status set at the same places. Were the order's shape to change, this fails, and the
yardstick must follow."""

import json

from temporalio.api.enums.v1 import EventType

from bench.drivers import ORDER
from bench.steps import STEPS
from models.orders import OrderStatus
from models.shipments import CarrierStatus
from models.wire import ORDER_STATUS
from tests.workflows.conftest import OrderUnderTest

KINDS = {
    EventType.EVENT_TYPE_MARKER_RECORDED: "local",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "remote",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
}


async def test_the_bench_yardstick_takes_a_bench_orders_steps(order: OrderUnderTest) -> None:
    await order.start({item["sku"]: item["quantity"] for item in ORDER["items"]})
    await order.wait_for(OrderStatus.SHIPPED)
    await order.carrier(CarrierStatus.DELIVERED, "evt-delivered")
    await order.wait_for(OrderStatus.DELIVERED)

    taken: list[tuple[str, str | None]] = []
    status: str | None = None  # set by an upsert, shown with the step that follows it
    for event in (await order.history()).events:
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            payload = fields.indexed_fields.get(ORDER_STATUS.name)
            if payload is not None:
                status = json.loads(payload.data)
        elif event.event_type in KINDS:
            taken.append((KINDS[event.event_type], status))
            status = None

    assert taken == [(kind, status) for kind, _, status in STEPS]
