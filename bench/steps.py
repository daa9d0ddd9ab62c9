"""A bench order's steps with nothing of ordermill in them: the floor under its worker's CPU.

The bench's order (one book, standard delivery) takes these steps in ordermill's worker, which
`STEPS` lists in order: three local activities (customer, stock, confirmation), the
authorization, a local one (fulfilling), pick and pack, booking, a local one (stock commit), the
capture, a local one (shipped) with a delivery deadline, the carrier's signal, and a last local
one (delivered). Here every step is a no-op run the way ordermill runs its own: sync activities
on a thread pool, ordermill's payload converter, an order-sized payload to each local step, a
summary on each, the status search attribute at each milestone. Its worker runs in a process of
its own (`python -m bench.steps ADDRESS TASK_QUEUE`), connected and sized as ordermill's worker
is by the same settings, and measured like it, so what ordermill's worker spends above it is
ordermill's own work.
"""

import asyncio
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Literal

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from models.wire import ORDER_STATUS

STEPS_WORKFLOW = "BenchOrderSteps"
DELIVERED_SIGNAL = "delivered"
SHIPPED, DELIVERED = "shipped", "delivered"
# About what an order's view weighs as JSON, which ordermill sends to each of its local steps.
PAYLOAD = "x" * 3000

Kind = Literal["local", "remote", "signal"]
# (kind, what, the status set with it): a bench order's path through OrderWorkflow.
STEPS: tuple[tuple[Kind, str, str | None], ...] = (
    ("local", "verify customer", None),
    ("local", "reserve stock", None),
    ("local", "record confirmed", "confirmed"),
    ("remote", "authorize", None),
    ("local", "record fulfilling", "fulfilling"),
    ("remote", "pick and pack", None),
    ("remote", "book shipment", None),
    ("local", "commit stock", None),
    ("remote", "capture", None),
    ("local", "record shipped", SHIPPED),
    ("signal", "carrier: delivered", None),
    ("local", "record delivered", DELIVERED),
)
RETRY = RetryPolicy(maximum_attempts=5)
TIMEOUT = timedelta(seconds=30)


@activity.defn(name="bench_local_step")
def local_step(payload: str) -> None:
    return None


@activity.defn(name="bench_remote_step")
def remote_step(what: str) -> str:
    return what


@workflow.defn(name=STEPS_WORKFLOW, sandboxed=False)
class OrderSteps:
    def __init__(self) -> None:
        self._delivered = False

    @workflow.run
    async def run(self, order_id: str) -> str:
        deadline: asyncio.Task[None] | None = None
        for kind, what, status in STEPS:
            if status is not None:
                workflow.upsert_search_attributes([ORDER_STATUS.value_set(status)])
            if kind == "local":
                await workflow.execute_local_activity(
                    local_step,
                    PAYLOAD,
                    start_to_close_timeout=TIMEOUT,
                    retry_policy=RETRY,
                    summary=what,
                )
            elif kind == "remote":
                await workflow.execute_activity(
                    remote_step,
                    what,
                    start_to_close_timeout=TIMEOUT,
                    retry_policy=RETRY,
                    summary=what,
                )
            else:
                await workflow.wait_condition(lambda: self._delivered)
                if deadline is not None:
                    deadline.cancel()
            if status == SHIPPED:  # as an order's parcel waits for its carrier, with a deadline
                deadline = asyncio.create_task(workflow.sleep(timedelta(days=14)))
        return order_id

    @workflow.signal(name=DELIVERED_SIGNAL)
    def deliver(self) -> None:
        self._delivered = True


async def serve(address: str, task_queue: str) -> None:
    from settings import Settings  # the worker's settings, kept out of the workflow's module
    from temporal_client import connect_temporal

    settings = Settings(temporal_address=address)
    client = await connect_temporal(settings)
    threads = settings.activity_threads
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=threads) as executor:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[OrderSteps],
            activities=[local_step, remote_step],
            activity_executor=executor,
            max_concurrent_activities=threads,
            max_concurrent_local_activities=threads,
        )
        async with worker:
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
    # Past the SDK's abort at interpreter exit (sdk-python #300).
    sys.stdout.flush()
    os._exit(0)
