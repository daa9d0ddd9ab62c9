"""A reconciliation run's row and its email to support: made where the run starts (the
workflow's first step, or the API for a run it starts) and where it closes."""

from datetime import UTC, datetime
from email.message import EmailMessage

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from activities.notifications import Mailer
from models.tables import ReconciliationDiscrepancy, ReconciliationRun

# The support email names this many discrepancies; the report has them all.
EMAILED = 20


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def open_run(engine: Engine, run_id: str, workflow_id: str) -> ReconciliationRun:
    """The run's row, created by whichever of its two openers comes first."""
    with Session(engine, expire_on_commit=False) as session:
        run = session.get(ReconciliationRun, run_id)
        if run is not None:
            return run
        session.add(
            ReconciliationRun(run_id=run_id, workflow_id=workflow_id, started_at=datetime.now(UTC))
        )
        try:
            session.commit()
        except IntegrityError:  # the other opener, at the same moment
            session.rollback()
        run = session.get(ReconciliationRun, run_id)
        assert run is not None
        return run


def report_email(
    mailer: Mailer,
    session: Session,
    run: ReconciliationRun,
    incomplete: list[str],
    base_url: str,
) -> EmailMessage:
    first = session.exec(
        select(ReconciliationDiscrepancy)
        .where(ReconciliationDiscrepancy.run_id == run.run_id)
        .order_by(col(ReconciliationDiscrepancy.kind), col(ReconciliationDiscrepancy.subject))
        .limit(EMAILED)
    ).all()
    total = sum(run.found.values())
    lines = [
        f"The reconciliation run {run.run_id} of {_aware(run.started_at):%Y-%m-%d %H:%M} UTC "
        f"found {total} discrepanc{'y' if total == 1 else 'ies'}.",
        "",
        *(f"  {kind}: {n}" for kind, n in sorted(run.found.items())),
    ]
    if incomplete:
        lines += ["", f"It could not finish these checks: {', '.join(incomplete)}."]
    if first:
        lines += ["", "The first of them:", ""]
        lines += [f"- {d.kind} {d.subject}: {d.detail}" for d in first]
    lines += [
        "",
        f"The whole report: {base_url}/reconciliation/runs/{run.run_id} (operator key).",
        "What to do with each kind: the README, Operating ordermill.",
    ]
    subject = f"Reconciliation {run.run_id}: {total} discrepancies" + (
        " (incomplete)" if incomplete else ""
    )
    return mailer.compose(
        key=f"reconciliation-{run.run_id}",
        order_id=f"reconciliation-{run.run_id}",
        kind="reconciliation_report",
        to=mailer.support_mailbox,
        subject=subject,
        body="\n".join(lines) + "\n",
    )
