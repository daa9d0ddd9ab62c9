"""The worker's Prometheus endpoint: the SDK's own metrics and ordermill's, through one meter,
with the CPU each of ordermill's steps cost the worker.

An order counts once when it finishes, however often its history is replayed: a replay of
each finished history afterwards adds nothing. (With no workflow cache a task that evicts its
order while a local activity runs is run again, and counts again: the SDK's metrics are per task
run, so the orders run cached here, as the worker runs them.)
"""

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities import cpu
from database import init_database
from encryption import data_converter
from models.holds import HoldResolution
from models.orders import OrderItem, OrderStatus, OrderView, PaymentMethod, PlaceOrderInput
from models.wire import QUERY_STATUS
from settings import Settings
from temporal_client import start_order
from tests.conftest import eventually, free_port, start_time_skipping
from tests.fakes import FakeOrderSystems, fake_worker
from tests.workflows.conftest import OrderUnderTest
from worker import build_email_sender, build_worker, metrics_runtime
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


# The sync activities a delivered order runs (pick and pack is async: it waits, in the loop).
ORDER_STEPS = (
    "verify_customer",
    "reserve_stock",
    "authorize_payment",
    "book_shipment",
    "commit_stock",
    "capture_payment",
    "record_order",
)


async def test_the_worker_measures_the_cpu_of_each_of_its_steps(tmp_path: Path) -> None:
    # A server of its own: the real worker polls ordermill's task queue, which others use.
    env = await start_time_skipping()
    address = f"127.0.0.1:{free_port()}"
    runtime = metrics_runtime(address)
    assert runtime is not None
    settings = Settings(
        _env_file=None, data_dir=tmp_path, fulfillment_delay=timedelta(0), activity_threads=4
    )
    engine = init_database(settings.effective_database_url)
    sender = build_email_sender(settings, engine, runtime.metric_meter)
    try:
        client = await Client.connect(
            env.client.service_client.config.target_host,
            namespace=env.client.namespace,
            data_converter=data_converter(None),
            runtime=runtime,
        )
        with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
            async with build_worker(client, settings, engine, executor, sender):
                handle = await start_order(
                    client,
                    PlaceOrderInput(
                        order_id="ord_cpu",
                        customer_id="cus_ada",
                        items=[OrderItem(sku="BOOK-DUNE", quantity=1)],
                        payment=PaymentMethod(token="tok_visa"),
                        placed_at=datetime.now(UTC),
                    ),
                )

                async def status() -> OrderStatus:
                    view = await handle.query(QUERY_STATUS, result_type=OrderView)
                    return view.status

                await eventually(status, lambda s: s is OrderStatus.SHIPPED, what="shipped")
                # Its confirmation and its shipping notice, each sent once.
                await eventually(
                    lambda: _scraped(address),
                    lambda lines: _emails_sent(lines) >= 2,
                    what="two emails delivered",
                    show=_emails_sent,
                )
    finally:
        sender.close()
        engine.dispose()
        await env.shutdown()

    lines = scrape(address)
    for step in ORDER_STEPS:
        runs = total(lines, "ordermill_activity_cpu_seconds_count", activity_type=step)
        spent = total(lines, "ordermill_activity_cpu_seconds_sum", activity_type=step)
        assert runs >= 1 and spent > 0, f"{step}: {runs} run(s), {spent} s"
    # Recorded on every change: confirmed, fulfilling, shipped.
    assert total(lines, "ordermill_activity_cpu_seconds_count", activity_type="record_order") >= 3
    assert total(lines, "ordermill_activity_cpu_seconds_count", activity_type="pick_and_pack") == 0
    assert total(lines, "ordermill_email_delivery_cpu_seconds_sum") > 0


def test_a_steps_cpu_keeps_its_fractions_of_a_millisecond() -> None:
    address = f"127.0.0.1:{free_port()}"
    runtime = metrics_runtime(address)
    assert runtime is not None
    cpu.email_delivered(runtime.metric_meter, 0.0004)

    lines = scrape(address)
    assert total(lines, "ordermill_email_delivery_cpu_seconds_sum") == pytest.approx(0.0004)
    assert total(lines, "ordermill_email_delivery_cpu_seconds_bucket", le="0.0002") == 0
    assert total(lines, "ordermill_email_delivery_cpu_seconds_bucket", le="0.0005") == 1


async def _scraped(address: str) -> list[str]:
    return scrape(address)


def _emails_sent(lines: list[str]) -> float:
    return total(lines, "ordermill_email_delivery_cpu_seconds_count")
