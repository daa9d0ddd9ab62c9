"""A bench order's steps with nothing of ordermill in them: the floor under its worker's CPU.

`STEPS` lists, in order, what the bench's order (one book, standard delivery) does in
ordermill's worker: its local and remote activities, by name, the status search attribute set
at each milestone, the delivery deadline started once it ships, and the carrier's signal. Here
each activity is a no-op run the way ordermill runs its own: sync ones on the worker's thread
pool (pick and pack is async in ordermill too), ordermill's payload converter, an order-sized
payload where ordermill sends the order's view (its records), a summary on each. Its worker
runs in a process of its own (`python -m bench.steps ADDRESS TASK_QUEUE`), with the worker's
settings, runtime and interceptors, and is measured like it, so what ordermill's worker spends
above it is ordermill's own work.
"""

import asyncio
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Literal, NamedTuple

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

from models.wire import ORDER_STATUS

STEPS_WORKFLOW = "BenchOrderSteps"
DELIVERED_SIGNAL = "delivered"
SHIPPED = "shipped"
RECORD = "record_order"  # the steps that carry the whole order's view
# About what an order's view weighs as JSON.
ORDER_VIEW = "x" * 3000


class Step(NamedTuple):
    kind: Literal["local", "remote", "timer", "signal"]
    name: str  # the activity's type, for an activity
    status: str | None = None  # the status search attribute set just before it


STEPS: tuple[Step, ...] = (
    Step("local", "verify_customer"),
    Step("local", "reserve_stock"),
    Step("local", RECORD, "confirmed"),
    Step("remote", "authorize_payment"),
    Step("local", RECORD, "fulfilling"),
    Step("remote", "pick_and_pack"),
    Step("remote", "book_shipment"),
    Step("local", "commit_stock"),
    Step("remote", "capture_payment"),
    Step("local", RECORD, SHIPPED),
    Step("timer", "delivery deadline"),
    Step("signal", "carrier_event"),
    Step("local", RECORD, "delivered"),
)
RETRY = RetryPolicy(maximum_attempts=5)
TIMEOUT = timedelta(seconds=30)


@activity.defn(name="bench_step")
def sync_step(payload: str) -> None:
    return None


@activity.defn(name="bench_async_step")
async def async_step(payload: str) -> None:
    return None


@workflow.defn(name=STEPS_WORKFLOW, sandboxed=False)
class OrderSteps:
    def __init__(self) -> None:
        self._delivered = False

    @workflow.run
    async def run(self, order_id: str) -> str:
        deadline: asyncio.Task[None] | None = None
        for step in STEPS:
            if step.status is not None:
                workflow.upsert_search_attributes([ORDER_STATUS.value_set(step.status)])
            if step.kind == "timer":
                deadline = asyncio.create_task(workflow.sleep(timedelta(days=14)))
            elif step.kind == "signal":
                await workflow.wait_condition(lambda: self._delivered)
                if deadline is not None:
                    deadline.cancel()
            else:
                payload = ORDER_VIEW if step.name == RECORD else order_id
                if step.kind == "local":
                    await workflow.execute_local_activity(
                        sync_step,
                        payload,
                        start_to_close_timeout=TIMEOUT,
                        retry_policy=RETRY,
                        summary=step.name,
                    )
                else:
                    await workflow.execute_activity(
                        async_step if step.name == "pick_and_pack" else sync_step,
                        payload,
                        start_to_close_timeout=TIMEOUT,
                        retry_policy=RETRY,
                        summary=step.name,
                    )
        return order_id

    @workflow.signal(name=DELIVERED_SIGNAL)
    def deliver(self) -> None:
        self._delivered = True


async def serve(address: str, task_queue: str) -> None:
    # The worker's own modules: this one is also imported by the tests and the bench.
    from temporalio.worker import Worker

    from activities.cpu import ActivityCpuInterceptor
    from settings import Settings
    from temporal_client import connect_temporal
    from worker import metrics_runtime

    settings = Settings(temporal_address=address)
    client = await connect_temporal(settings, metrics_runtime(settings.worker_metrics_address))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    threads = settings.activity_threads
    with ThreadPoolExecutor(max_workers=threads) as executor:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[OrderSteps],
            activities=[sync_step, async_step],
            activity_executor=executor,
            max_concurrent_activities=threads,
            max_concurrent_local_activities=threads,
            max_cached_workflows=settings.workflow_cache_size,
            interceptors=[ActivityCpuInterceptor()],
        )
        async with worker:
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
    # Past the SDK's abort at interpreter exit (sdk-python #300).
    sys.stdout.flush()
    os._exit(0)
