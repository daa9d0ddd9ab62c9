"""The reconciliation's reports, and a run on an operator's request (operators only).

The nightly run is the `ordermill-reconcile` Schedule's (schedules.py); `POST
/reconciliation/runs` starts one now, unless one is already running: 409 names it.
"""

import uuid
from datetime import UTC
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Path, Response
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.reconcile_report import open_run
from api.auth import OperatorOnly
from api.deps import EngineDep, SessionDep, TemporalClientDep
from api.order_calls import temporal_unavailable
from api.problems import ApiProblem, auth_responses, problem_responses
from models.reconcile import Discrepancy, DiscrepancyKind, ReconcileInput, ReconciliationReport
from models.tables import ReconciliationDiscrepancy, ReconciliationRun
from models.wire import RECONCILE_ON_REQUEST, RECONCILE_SCHEDULE, RECONCILE_WORKFLOW, TASK_QUEUE

router = APIRouter(prefix="/reconciliation", tags=["reconciliation"], dependencies=[OperatorOnly])

# A report lists this many discrepancies at most; `found` counts them all, by kind.
REPORT_LIMIT = 1000
RunId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["rec_3f2a9c1d7e4b"])]


def report(session: Session, run: ReconciliationRun) -> ReconciliationReport:
    found = session.exec(
        select(ReconciliationDiscrepancy)
        .where(ReconciliationDiscrepancy.run_id == run.run_id)
        .order_by(col(ReconciliationDiscrepancy.kind), col(ReconciliationDiscrepancy.subject))
        .limit(REPORT_LIMIT)
    ).all()
    return ReconciliationReport(
        run_id=run.run_id,
        status=run.status,
        started_at=run.started_at.replace(tzinfo=run.started_at.tzinfo or UTC),
        finished_at=run.finished_at.replace(tzinfo=run.finished_at.tzinfo or UTC)
        if run.finished_at
        else None,
        checked=run.checked,
        found=run.found,
        discrepancies=[
            Discrepancy(kind=DiscrepancyKind(d.kind), subject=d.subject, detail=d.detail)
            for d in found
        ],
    )


@router.get(
    "/reports/latest",
    response_model=ReconciliationReport,
    summary="The latest finished reconciliation report",
    responses={**auth_responses(operator=True), **problem_responses(404)},
)
def latest_report(session: SessionDep) -> ReconciliationReport:
    """The last run that finished (or ended incomplete): what it checked, the discrepancies it
    found by kind, and the first of them. 404 before any run has finished."""
    run = latest_finished_run(session)
    if run is None:
        raise ApiProblem(404, "no-reconciliation-report", "no reconciliation has finished yet")
    return report(session, run)


def latest_finished_run(session: Session) -> ReconciliationRun | None:
    """The last run that finished or ended incomplete (the console shows its report too)."""
    return session.exec(
        select(ReconciliationRun)
        .where(col(ReconciliationRun.status) != "running")
        .order_by(col(ReconciliationRun.started_at).desc())
        .limit(1)
    ).first()


@router.get(
    "/runs/{run_id}",
    response_model=ReconciliationReport,
    summary="One reconciliation run's report, running or finished",
    responses={**auth_responses(operator=True), **problem_responses(404, 422)},
)
def run_report(run_id: RunId, session: SessionDep) -> ReconciliationReport:
    run = session.get(ReconciliationRun, run_id)
    if run is None:
        raise ApiProblem(404, "reconciliation-run-not-found", f"there is no run {run_id}")
    return report(session, run)


@router.post(
    "/runs",
    status_code=202,
    response_model=ReconciliationReport,
    summary="Run the reconciliation now",
    responses={
        202: {"description": "Started; its report is at `Location`"},
        **auth_responses(operator=True),
        **problem_responses(409, 503),
    },
)
async def start_run(
    response: Response, client: TemporalClientDep, engine: EngineDep
) -> ReconciliationReport:
    """Starts a run at once, beside the nightly schedule. 409, naming it, while a run is in
    progress: the schedule's or another operator's."""
    try:
        running = await _scheduled_run_in_progress(client)
        if running is not None:
            raise ApiProblem(
                409,
                "reconciliation-running",
                f"the scheduled reconciliation {running} is running; its report will follow",
            )
        run_id = f"rec_{uuid.uuid4().hex[:24]}"
        try:
            await client.start_workflow(
                RECONCILE_WORKFLOW,
                ReconcileInput(run_id=run_id),
                id=RECONCILE_ON_REQUEST,
                task_queue=TASK_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary="Reconciliation on an operator's request",
            )
        except WorkflowAlreadyStartedError:
            other = await to_thread.run_sync(_running_on_request, engine)
            raise ApiProblem(
                409,
                "reconciliation-running",
                f"the reconciliation {other or RECONCILE_ON_REQUEST} is already running",
                headers={"Location": f"/reconciliation/runs/{other}"} if other else None,
            ) from None
    except RPCError as err:
        raise temporal_unavailable(err) from None
    opened = await to_thread.run_sync(_opened, engine, run_id)
    response.headers["Location"] = f"/reconciliation/runs/{run_id}"
    return opened


async def _scheduled_run_in_progress(client: Client) -> str | None:
    """The workflow id of the schedule's run still going, if any."""
    try:
        described = await client.get_schedule_handle(RECONCILE_SCHEDULE).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return None  # no schedule here (yet): nothing of it runs
        raise
    for action in described.info.running_actions:
        if isinstance(action, ScheduleActionExecutionStartWorkflow):
            return action.workflow_id
    return None


def _opened(engine: Engine, run_id: str) -> ReconciliationReport:
    """The run's row, as the workflow's first step also makes it (whichever comes first)."""
    run = open_run(engine, run_id, RECONCILE_ON_REQUEST)
    with Session(engine) as session:
        return report(session, run)


def _running_on_request(engine: Engine) -> str | None:
    with Session(engine) as session:
        return session.exec(
            select(ReconciliationRun.run_id)
            .where(
                ReconciliationRun.workflow_id == RECONCILE_ON_REQUEST,
                ReconciliationRun.status == "running",
            )
            .order_by(col(ReconciliationRun.started_at).desc())
        ).first()
