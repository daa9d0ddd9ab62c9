"""The worker's Prometheus endpoint: the SDK's own metrics and ordermill's, through one meter.

An order counts once when it finishes, however often its history is replayed: here every
workflow task replays the whole history (no cache), and a replay of the finished history
afterwards adds nothing.
"""

import urllib.request

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.conftest import free_port
from tests.fakes import FakeOrderSystems, fake_worker
from tests.workflows.conftest import OrderUnderTest
from worker import metrics_runtime
from workflows.order import OrderWorkflow
from workflows.stock_receipt import StockReceiptWorkflow


def scrape(address: str) -> list[str]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        return [line for line in response.read().decode().splitlines() if line[:1] != "#"]


def finished(lines: list[str], status: str) -> float:
    """The order count of `status`, summed over the other labels (task queue, ...)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("ordermill_orders_finished_total{") and f'status="{status}"' in line
    )


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
    async with fake_worker(client, fakes, max_cached_workflows=0) as task_queue:
        declined = OrderUnderTest(env=time_skipping_env, fakes=fakes, task_queue=task_queue)
        await declined.start(token="tok_chargeDeclined")
        rejected = OrderUnderTest(env=time_skipping_env, fakes=fakes, task_queue=task_queue)
        await rejected.start(customer_id="cus_blocked")
        await declined.result()
        await rejected.result()
        histories = [await o.handle.fetch_history() for o in (declined, rejected)]

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
    assert finished(lines, "completed") == 0
    # The SDK's own, on the same endpoint: task latencies and the like.
    sdk = {line.split("{", 1)[0] for line in lines}
    assert {
        "temporal_workflow_completed_total",
        "temporal_workflow_task_execution_latency_seconds_bucket",
    } <= sdk
