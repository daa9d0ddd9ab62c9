"""The ceiling: a bare workflow of an order's shape, with nothing of ordermill in it.

Four no-op activities, a wait for one signal, one more activity: the Temporal work an order
needs at the least. Driven like an order (started, polled by query until it waits, signalled,
polled until it shows `delivered`), its rate is what the server allows on this machine.
"""

from datetime import timedelta

from temporalio import activity, workflow

STAGE_QUERY = "stage"
DELIVERED_SIGNAL = "delivered"
AWAITING = "awaiting_delivery"
DELIVERED = "delivered"


@activity.defn(name="bench_step")
async def step(name: str) -> str:
    return name


@workflow.defn(name="BenchBareOrder")
class BareOrder:
    @workflow.init
    def __init__(self, order_id: str) -> None:
        self._stage = "received"
        self._delivered = False

    @workflow.run
    async def run(self, order_id: str) -> str:
        for name in ("verify", "reserve", "authorize", "ship"):
            await workflow.execute_activity(
                step, name, start_to_close_timeout=timedelta(seconds=30)
            )
        self._stage = AWAITING
        await workflow.wait_condition(lambda: self._delivered)
        self._stage = DELIVERED
        await workflow.execute_activity(
            step, "notify", start_to_close_timeout=timedelta(seconds=30)
        )
        return order_id

    @workflow.signal(name=DELIVERED_SIGNAL)
    def deliver(self) -> None:
        self._delivered = True

    @workflow.query(name=STAGE_QUERY)
    def stage(self) -> str:
        return self._stage
