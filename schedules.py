"""The `ordermill-reconcile` Schedule: the nightly reconciliation, created or updated in place.

`make run` calls this against its dev server; against a cluster, run `python schedules.py`
(or `make schedule`) with the worker's settings, once per deploy: it creates the Schedule, or
brings an existing one's spec, action and policy up to date. An operator's pause survives
the update.
"""

import asyncio
import logging
import os
import sys

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError

from models.reconcile import ReconcileInput
from models.wire import RECONCILE_SCHEDULE, RECONCILE_WORKFLOW, TASK_QUEUE
from settings import Settings

log = logging.getLogger("ordermill.schedules")


def reconcile_schedule(cron: str, *, paused: bool = False) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RECONCILE_WORKFLOW,
            ReconcileInput(),
            id=RECONCILE_SCHEDULE,  # the Schedule appends each run's time
            task_queue=TASK_QUEUE,
            static_summary="Nightly reconciliation: payments, stock and open orders",
        ),
        spec=ScheduleSpec(cron_expressions=[cron], time_zone_name="UTC"),
        # A run still going when the next is due (a very large night) is not doubled.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(paused=paused, note="paused when created (tests)" if paused else None),
    )


async def ensure_reconcile_schedule(client: Client, cron: str, *, paused: bool = False) -> str:
    """Create the Schedule, or update the existing one's spec, action and policy; "created"
    or "updated"."""
    wanted = reconcile_schedule(cron, paused=paused)
    try:
        await client.create_schedule(RECONCILE_SCHEDULE, wanted)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule = current.description.schedule
        schedule.spec, schedule.action, schedule.policy = wanted.spec, wanted.action, wanted.policy
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(RECONCILE_SCHEDULE).update(update)
    return "updated"


async def _main(settings: Settings) -> int:
    from temporal_client import connect_temporal

    try:
        client = await connect_temporal(settings)
        outcome = await ensure_reconcile_schedule(client, settings.reconcile_cron)
    except (RPCError, RuntimeError) as err:
        log.error("schedule %s not set: %s", RECONCILE_SCHEDULE, err)
        return 2
    print(f"schedule {RECONCILE_SCHEDULE} {outcome}: {settings.reconcile_cron} (UTC)")
    return 0


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    code = asyncio.run(_main(Settings()))
    sys.stdout.flush()
    sys.stderr.flush()
    # A process that used a client can abort at exit (sdk-python #300): leave deliberately.
    os._exit(code)


if __name__ == "__main__":
    main()
