"""The worker's Prometheus endpoint: the SDK's own metrics and ordermill's, through one meter.

An order counts once when it finishes, however often its history is replayed: a replay of
each finished history afterwards adds nothing. (With no workflow cache a task that evicts its
order while a local activity runs is run again, and counts again: the SDK's metrics are per task
run, so the orders run cached here, as the worker runs them.)
"""

import urllib.request

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from models.holds import HoldResolution
from tests.conftest import free_port
from tests.fakes import FakeOrderSystems, fake_worker
from tests.workflows.conftest import OrderUnderTest
from worker import metrics_runtime
from workflows.order import OrderWorkflow
from workflows.stock_receipt import StockReceiptWorkflow


def scrape(address: str) -> list[str]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        return [line for line in response.read().decode().splitlines() if line[:1] != "#"]


def total(lines: list[str], name: str, **labels: str) -> float:
    """The series `name` with these labels, summed over the others (task queue, ...)."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(name + "{") and all(label in line for label in wanted)
    )


def finished(lines: list[str], status: str) -> float:
    return total(lines, "ordermill_orders_finished_total", status=status)


async def test_the_worker_serves_sdk_metrics_and_counts_each_finished_order_once(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    runtime = metrics_runtime(address)
    assert runtime is not None and metrics_runtime(None) is None
    client = await Client.connect(
        time_skipping_env.client.service_client.config.target_host,
        namespace=time_skipping_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    fakes = FakeOrderSystems()
    async with fake_worker(client, fakes) as task_queue:
        declined = OrderUnderTest(env=time_skipping_env, fakes=fakes, task_queue=task_queue)
        await declined.start(token="tok_chargeDeclined")
        rejected = OrderUnderTest(env=time_skipping_env, fakes=fakes, task_queue=task_queue)
        await rejected.start(customer_id="cus_blocked")
        ebook = OrderUnderTest(env=time_skipping_env, fakes=fakes, task_queue=task_queue)
        await ebook.start({"EBOOK-DUNE": 1})
        reviewed = OrderUnderTest(env=time_skipping_env, fakes=fakes, task_queue=task_queue)
        await reviewed.start({"BOOK-FIRST-EDITION": 1})
        await reviewed.hold("risk_review")
        await reviewed.resolve("risk_review", HoldResolution.REJECTED, "card testing")
        orders = (declined, rejected, ebook, reviewed)
        for order in orders:
            await order.result()
        histories = [await o.handle.fetch_history() for o in orders]

    replayer = Replayer(
        workflows=[OrderWorkflow, StockReceiptWorkflow],
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    for history in histories:
        await replayer.replay_workflow(history)

    lines = scrape(address)
    assert finished(lines, "payment_declined") == 1
    assert finished(lines, "rejected") == 1
    assert finished(lines, "completed") == 1
    assert finished(lines, "cancelled") == 1

    # Payments, each call once by the outcome that reached the order, and its amount.
    def payments(operation: str, outcome: str) -> tuple[float, float]:
        return (
            total(lines, "ordermill_payments_total", operation=operation, outcome=outcome),
            total(
                lines,
                "ordermill_payment_amount_minor_units_total",
                operation=operation,
                outcome=outcome,
                currency="USD",
            ),
        )

    first_edition = 120000 + 499  # with its shipping
    assert payments("authorize", "declined") == (1, 1899 + 499)
    assert payments("authorize", "approved") == (2, 999 + first_edition)
    assert payments("capture", "approved") == (1, 999)
    assert payments("void", "approved") == (1, first_edition)

    # Holds, placed and decided, by code.
    assert total(lines, "ordermill_holds_placed_total", code="risk_review") == 1
    assert (
        total(lines, "ordermill_holds_resolved_total", code="risk_review", resolution="rejected")
        == 1
    )

    # Stage durations: every order left `received` once, only the reviewed one `on_hold`.
    def left(stage: str) -> float:
        return total(lines, "ordermill_stage_duration_seconds_count", stage=stage)

    assert left("received") == 4
    assert left("on_hold") == 1
    assert left("cancelled") == 0  # a final status is never left
    # Decided at once: its time on hold is in the buckets under a day, not in days.
    assert total(lines, "ordermill_stage_duration_seconds_bucket", stage="on_hold", le="86400") == 1
    # The SDK's own, on the same endpoint: task latencies and the like.
    sdk = {line.split("{", 1)[0] for line in lines}
    assert {
        "temporal_workflow_completed_total",
        "temporal_workflow_task_execution_latency_seconds_bucket",
    } <= sdk
