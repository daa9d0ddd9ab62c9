"""ReconcileWorkflow: after the fact, check that the money and the stock add up.

Run nightly by the `ordermill-reconcile` Schedule (see schedules.py), or on an operator's
request. Three checks, each one activity that pages through its rows and heartbeats: the
payment ledger per order, the stock ledgers per SKU and warehouse, and the open orders against
their workflows. A check that cannot finish leaves the run incomplete rather than failing it:
the report says which, and the support mailbox hears of it.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from activities.reconcile import ReconcileActivities
from models.reconcile import (
    CheckCounts,
    CheckRequest,
    FinishRequest,
    ReconcileInput,
    ReconcileOutcome,
)
from models.wire import RECONCILE_WORKFLOW
from workflows import policies

# A check's one attempt may page through every order; a lost worker is noticed by heartbeats.
CHECK_TIMEOUT = timedelta(hours=2)
CHECK_HEARTBEAT = timedelta(minutes=1)
CHECK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5), maximum_attempts=5
)
CHECKS = (
    ("payments", ReconcileActivities.check_payments, "Check the payment ledger, order by order"),
    ("stock", ReconcileActivities.check_stock, "Check the stock ledgers, SKU by warehouse"),
    ("open orders", ReconcileActivities.check_orders, "Check open orders against their workflows"),
)


@workflow.defn(name=RECONCILE_WORKFLOW, sandboxed=False)
class ReconcileWorkflow:
    @workflow.run
    async def run(self, request: ReconcileInput) -> ReconcileOutcome:
        if request.fulfilling_limit is None:
            # Past pick/pack's every attempt and the carrier's booking, the order should have
            # shipped or been held.
            limit = policies.longest(policies.WAREHOUSE) + policies.longest(policies.CARRIER)
            request = request.model_copy(update={"fulfilling_limit": limit})
        run = await workflow.execute_activity_method(
            ReconcileActivities.begin,
            request,
            start_to_close_timeout=policies.DATABASE.start_to_close,
            retry_policy=policies.DATABASE.retry,
            summary="Open the run's report",
        )
        counts, incomplete = CheckCounts(), []
        for name, check, summary in CHECKS:
            try:
                part: CheckCounts = await workflow.execute_activity_method(
                    check,
                    CheckRequest(run=run, settings=request),
                    start_to_close_timeout=CHECK_TIMEOUT,
                    heartbeat_timeout=CHECK_HEARTBEAT,
                    retry_policy=CHECK_RETRY,
                    summary=summary,
                )
            except ActivityError as err:
                workflow.logger.warning(
                    "reconciliation %s: %s check failed: %s", run.run_id, name, err.cause
                )
                incomplete.append(name)
                continue
            counts.checked.update(part.checked)
        return await workflow.execute_activity_method(
            ReconcileActivities.finish,
            FinishRequest(run=run, counts=counts, incomplete=incomplete),
            start_to_close_timeout=policies.DATABASE.start_to_close,
            # The report is the run's point: it waits out a database outage of hours. Past
            # that the run fails, visibly, and the next night's run checks again.
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=10), maximum_attempts=25),
            summary="Close the report; email support if anything is off",
        )
