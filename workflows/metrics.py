"""ordermill's business metrics emitted from workflow code, through the SDK's meter.

The workflow's meter does not emit while a history is replayed, so an order counts once
however often a worker replays it. With no metrics endpoint configured the meter is a no-op.
"""

from temporalio import workflow

from models.orders import OrderStatus


def order_finished(status: OrderStatus) -> None:
    """`ordermill_orders_finished_total{status}`: orders that reached a final status."""
    workflow.metric_meter().create_counter(
        "ordermill_orders_finished", "Orders that reached a final status"
    ).add(1, {"status": status.value})
