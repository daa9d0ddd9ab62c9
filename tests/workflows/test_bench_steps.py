"""The bench's yardstick for the worker (bench/steps.py) takes a bench order's steps as
OrderWorkflow takes them: the same activities, local or remote, the same timer and signal, in
the same order, with the status set at the same places. Were the order's shape to change, this
fails, and the yardstick must follow."""

import json

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from bench.drivers import ORDER
from bench.steps import STEPS
from models.orders import OrderStatus
from models.shipments import CarrierStatus
from models.wire import ORDER_STATUS
from tests.workflows.conftest import OrderUnderTest


def step_of(event: HistoryEvent) -> tuple[str, str] | None:
    """(kind, name) of an event that is a step, as bench/steps.py names them; else None."""
    if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
        marker = json.loads(event.marker_recorded_event_attributes.details["data"].payloads[0].data)
        return "local", marker["activity_type"]
    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        return "remote", event.activity_task_scheduled_event_attributes.activity_type.name
    if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
        summary = json.loads(event.user_metadata.summary.data)
        return "timer", "delivery deadline" if summary.endswith("delivery deadline") else summary
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        return "signal", event.workflow_execution_signaled_event_attributes.signal_name
    return None


async def test_the_bench_yardstick_takes_a_bench_orders_steps(order: OrderUnderTest) -> None:
    await order.start({item["sku"]: item["quantity"] for item in ORDER["items"]})
    await order.wait_for(OrderStatus.SHIPPED)
    await order.carrier(CarrierStatus.DELIVERED, "evt-delivered")
    await order.wait_for(OrderStatus.DELIVERED)

    taken: list[tuple[str, str, str | None]] = []
    status: str | None = None  # set by an upsert, shown with the step that follows it
    for event in (await order.history()).events:
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            payload = fields.indexed_fields.get(ORDER_STATUS.name)
            if payload is not None:
                status = json.loads(payload.data)
        elif (step := step_of(event)) is not None:
            taken.append((*step, status))
            status = None

    # The bench measures an order until it shows `delivered`; what follows (the return
    # window) is not in the yardstick.
    assert taken[: len(STEPS)] == [tuple(step) for step in STEPS]
    assert [kind for kind, _, _ in taken[len(STEPS) :]] in ([], ["timer"])
