"""ordermill's business metrics emitted from workflow code, through the SDK's meter.

The workflow's meter does not emit while a history is replayed, so an event counts once
however often a worker replays it: a payment counts when its call's outcome reaches the order,
after the activity's retries. With no metrics endpoint configured the meter is a no-op.
"""

from datetime import timedelta

from temporalio import workflow

from models.holds import HoldCode
from models.orders import OrderStatus

STAGE_DURATION = "ordermill_stage_duration"
# An order spends seconds in some stages and days in others (a review, a backorder, transit).
_MINUTES = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
STAGE_BUCKETS_SECONDS = (*_MINUTES, *(86400.0 * days for days in (1, 2, 3, 7, 14, 30)))


def order_finished(status: OrderStatus) -> None:
    """`ordermill_orders_finished_total{status}`: orders that reached a final status."""
    workflow.metric_meter().create_counter(
        "ordermill_orders_finished", "Orders that reached a final status"
    ).add(1, {"status": status.value})


def stage_left(stage: OrderStatus, spent: timedelta) -> None:
    """`ordermill_stage_duration_seconds{stage}`: how long an order stayed in a status."""
    workflow.metric_meter().create_histogram_timedelta(
        STAGE_DURATION, "Time an order spent in a status before it moved on", "duration"
    ).record(max(spent, timedelta(0)), {"stage": stage.value})


def payment(operation: str, outcome: str, amount: int, currency: str) -> None:
    """`ordermill_payments_total{operation,outcome}` and the amount, in minor units, in
    `ordermill_payment_amount_minor_units_total{operation,outcome,currency}`."""
    meter = workflow.metric_meter()
    labels = {"operation": operation, "outcome": outcome}
    meter.create_counter("ordermill_payments", "Payment calls by operation and outcome").add(
        1, labels
    )
    meter.create_counter(
        "ordermill_payment_amount_minor_units",
        "Amounts of payment calls in the currency's minor units (cents)",
    ).add(amount, {**labels, "currency": currency})


def hold_placed(code: HoldCode) -> None:
    """`ordermill_holds_placed_total{code}`."""
    workflow.metric_meter().create_counter(
        "ordermill_holds_placed", "Holds placed on orders, by code"
    ).add(1, {"code": code.value})


def hold_resolved(code: HoldCode, resolution: str) -> None:
    """`ordermill_holds_resolved_total{code,resolution}`: released, rejected or timed_out."""
    workflow.metric_meter().create_counter(
        "ordermill_holds_resolved", "Holds decided, by code and how"
    ).add(1, {"code": code.value, "resolution": resolution})
