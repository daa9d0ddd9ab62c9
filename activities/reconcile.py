"""The nightly reconciliation's activities: read the shop's ledgers in batches, store what
does not add up, report.

Each check pages through its rows in batches of `batch_size`, in key order, and heartbeats
the last key with its counts: a retried attempt carries on from there, and the memory it
holds is one batch. Discrepancies are stored as they are found, one row per kind and subject,
so a batch checked twice stores nothing twice. The rules themselves are in
`activities/reconcile_checks.py`.
"""

import asyncio
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, tuple_
from sqlalchemy import select as sql_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.client import Client

from activities.email_sender import EmailSender, outbox_row
from activities.notifications import Mailer
from activities.reconcile_checks import (
    RecordedMoney,
    StockLedger,
    order_money,
    status_mismatch,
    stock_row,
    stuck,
)
from activities.reconcile_report import open_run, report_email
from models.orders import FINAL_STATUSES, OrderStatus
from models.reconcile import (
    CheckCounts,
    CheckRequest,
    Discrepancy,
    FinishRequest,
    ReconcileInput,
    ReconcileOutcome,
    RunStarted,
)
from models.tables import (
    OrderEvent,
    OrderRecord,
    PaymentTransaction,
    ReconciliationDiscrepancy,
    ReconciliationRun,
    Restock,
    Stock,
    StockReceipt,
    StockReservation,
)
from models.wire import ORDER_STATUS, ORDER_WORKFLOW, order_workflow_id

# A visibility query lists this many orders by id at most: the query is text, and servers
# bound its length.
VISIBILITY_BATCH = 100
# Ids a visibility query can quote as they are (the API's, and the CLI's).
_QUOTABLE = re.compile(r"[A-Za-z0-9_.:@-]+")
_OPEN = [status.value for status in OrderStatus if status not in FINAL_STATUSES]


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _store(engine: Engine, run_id: str, found: Iterable[Discrepancy]) -> None:
    """Keep each discrepancy once: a batch checked again finds the same ones."""
    rows = [
        ReconciliationDiscrepancy(
            run_id=run_id, kind=d.kind.value, subject=d.subject[:300], detail=d.detail
        )
        for d in found
    ]
    for row in rows:
        with Session(engine) as session:
            exists = session.exec(
                select(ReconciliationDiscrepancy.id).where(
                    ReconciliationDiscrepancy.run_id == run_id,
                    ReconciliationDiscrepancy.kind == row.kind,
                    ReconciliationDiscrepancy.subject == row.subject,
                )
            ).first()
            if exists is not None:
                continue
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # an earlier attempt of this check, still running, won
                session.rollback()


class _Progress:
    """A check's place and counts, resumed from the last heartbeat of an earlier attempt."""

    def __init__(self, *counted: str) -> None:
        details = activity.info().heartbeat_details
        self.cursor: Any = details[0] if details else None
        # Every count the check keeps, 0 when nothing was: a report says "0 orders checked".
        self.checked: dict[str, int] = {what: 0 for what in counted}
        if len(details) > 1:
            self.checked.update(details[1])

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n

    def beat(self, cursor: Any) -> None:
        self.cursor = cursor
        activity.heartbeat(cursor, self.checked)

    def counts(self) -> CheckCounts:
        return CheckCounts(checked=self.checked)


class ReconcileActivities:
    def __init__(
        self,
        engine: Engine,
        client: Client,
        mailer: Mailer,
        sender: EmailSender,
        *,
        public_base_url: str,
    ) -> None:
        self._engine = engine
        self._client = client
        self._mailer = mailer
        self._sender = sender
        self._base_url = public_base_url.rstrip("/")

    @activity.defn(name="reconcile_begin")
    def begin(self, request: ReconcileInput) -> RunStarted:
        """The run's row: created once (by the API, for a run it starts, or here)."""
        info = activity.info()
        run_id = request.run_id or str(info.workflow_run_id)
        run = open_run(self._engine, run_id, str(info.workflow_id))
        started = _aware(run.started_at)
        return RunStarted(run_id=run_id, started_at=started, cutoff=started - request.settle)

    # ---- money -----------------------------------------------------------------------------

    @activity.defn(name="reconcile_payments")
    def check_payments(self, request: CheckRequest) -> CheckCounts:
        """Per order: each authorization's captures within it, refunds within the captures, one
        capture per parcel, and the ledger's totals equal to the read model's."""
        progress = _Progress("orders", "ledger_rows", "orders_settling")
        cutoff = request.run.cutoff
        while True:
            with Session(self._engine) as session:
                query = select(
                    OrderRecord.order_id,
                    OrderRecord.captured,
                    OrderRecord.refunded,
                    OrderRecord.updated_at,
                ).order_by(col(OrderRecord.order_id))
                if progress.cursor is not None:
                    query = query.where(col(OrderRecord.order_id) > progress.cursor)
                orders = session.exec(query.limit(request.settings.batch_size)).all()
                if not orders:
                    return progress.counts()
                ids = [order[0] for order in orders]
                ledger: dict[str, list[PaymentTransaction]] = {}
                for row in session.exec(
                    select(PaymentTransaction).where(col(PaymentTransaction.order_id).in_(ids))
                ):
                    ledger.setdefault(row.order_id, []).append(row)
                outside = _settled_outside(session, [o[0] for o in orders if o[2]])
            found: list[Discrepancy] = []
            for order_id, captured, refunded, updated_at in orders:
                rows = ledger.get(order_id, [])
                latest = max([_aware(updated_at), *(_aware(r.created_at) for r in rows)])
                if latest > cutoff:
                    progress.count("orders_settling")  # mid-change: the next run checks it
                    continue
                progress.count("orders")
                progress.count("ledger_rows", len(rows))
                recorded = RecordedMoney(captured, refunded, settled_outside=order_id in outside)
                found += order_money(order_id, rows, recorded)
            _store(self._engine, request.run.run_id, found)
            progress.beat(ids[-1])

    # ---- stock -----------------------------------------------------------------------------

    @activity.defn(name="reconcile_stock")
    def check_stock(self, request: CheckRequest) -> CheckCounts:
        """Per SKU and warehouse: seeded + received - committed + restocked = on hand, and
        reserved = the open reservations. Each batch is one statement: one snapshot of the
        rows and their ledgers, which change together in one transaction."""
        progress = _Progress("stock_rows")
        key = tuple_(col(Stock.sku), col(Stock.warehouse))
        while True:
            query = _stock_ledgers().order_by(col(Stock.sku), col(Stock.warehouse))
            if progress.cursor is not None:
                query = query.where(key > tuple_(*progress.cursor))
            with Session(self._engine) as session:
                rows = session.execute(query.limit(request.settings.batch_size)).all()
            if not rows:
                return progress.counts()
            found: list[Discrepancy] = []
            for row in rows:
                progress.count("stock_rows")
                found += stock_row(StockLedger(*row))
            _store(self._engine, request.run.run_id, found)
            progress.beat([rows[-1][0], rows[-1][1]])

    # ---- open orders -------------------------------------------------------------------------

    @activity.defn(name="reconcile_orders")
    async def check_orders(self, request: CheckRequest) -> CheckCounts:
        """Per open order in the read model: its workflow running with the same `OrderStatus`
        (one visibility query per batch, no query per order), and no longer in its stage than
        the stage can take."""
        progress = _Progress("open_orders")
        settings, run = request.settings, request.run
        limits = {OrderStatus.RECEIVED: settings.received_limit}
        if settings.fulfilling_limit is not None:
            limits[OrderStatus.FULFILLING] = settings.fulfilling_limit
        size = min(settings.batch_size, VISIBILITY_BATCH)
        while True:
            orders = await asyncio.to_thread(self._open_orders, progress.cursor, size, run.cutoff)
            if not orders:
                return progress.counts()
            listed = await self._workflows([order_id for order_id, *_ in orders])
            waiting = [
                order_id
                for order_id, status, holds, _ in orders
                if OrderStatus(status) in limits and not holds
            ]
            since = await asyncio.to_thread(self._stage_since, waiting)
            found: list[Discrepancy] = []
            for order_id, status, _, placed_at in orders:
                if not _QUOTABLE.fullmatch(order_id):
                    progress.count("open_orders_unlisted")  # no query can name it as it is
                    continue
                progress.count("open_orders")
                workflow_status, searchable = listed.get(order_id, (None, None))
                mismatch = status_mismatch(order_id, status, workflow_status, searchable)
                if mismatch is not None:
                    found.append(mismatch)
                if order_id in waiting:
                    entered = since.get(order_id, _aware(placed_at))
                    late = stuck(order_id, status, entered, run.started_at, limits)
                    if late is not None:
                        found.append(late)
            await asyncio.to_thread(_store, self._engine, run.run_id, found)
            progress.beat(orders[-1][0])

    def _open_orders(
        self, after: str | None, size: int, cutoff: datetime
    ) -> list[tuple[str, str, list[str], datetime]]:
        query = (
            select(
                OrderRecord.order_id,
                OrderRecord.status,
                OrderRecord.open_holds,
                OrderRecord.placed_at,
            )
            .where(col(OrderRecord.status).in_(_OPEN), col(OrderRecord.updated_at) <= cutoff)
            .order_by(col(OrderRecord.order_id))
            .limit(size)
        )
        if after is not None:
            query = query.where(col(OrderRecord.order_id) > after)
        with Session(self._engine) as session:
            return [tuple(row) for row in session.exec(query).all()]  # type: ignore[misc]

    async def _workflows(self, order_ids: list[str]) -> dict[str, tuple[str, str | None]]:
        """Each order's workflow status and `OrderStatus`, as visibility lists them."""
        by_workflow = {order_workflow_id(o): o for o in order_ids if _QUOTABLE.fullmatch(o)}
        if not by_workflow:
            return {}
        quoted = ", ".join(f'"{workflow_id}"' for workflow_id in by_workflow)
        query = f'WorkflowType = "{ORDER_WORKFLOW}" AND WorkflowId IN ({quoted})'
        listed: dict[str, tuple[str, str | None]] = {}
        async for execution in self._client.list_workflows(query, page_size=len(by_workflow)):
            status = execution.status.name if execution.status is not None else "UNKNOWN"
            order_id = by_workflow[execution.id]
            # An order is one workflow; were there ever two runs, the running one speaks.
            if order_id not in listed or status == "RUNNING":
                listed[order_id] = (status, execution.typed_search_attributes.get(ORDER_STATUS))
        return listed

    def _stage_since(self, order_ids: list[str]) -> dict[str, datetime]:
        """When each order entered its current status: its timeline's last run of entries in
        that status began."""
        if not order_ids:
            return {}
        since: dict[str, datetime] = {}
        current: dict[str, str] = {}
        ended: set[str] = set()
        with Session(self._engine) as session:
            records = session.exec(
                select(OrderRecord.order_id, OrderRecord.status).where(
                    col(OrderRecord.order_id).in_(order_ids)
                )
            ).all()
            current = dict(records)
            events = session.exec(
                select(OrderEvent.order_id, OrderEvent.status, OrderEvent.at)
                .where(col(OrderEvent.order_id).in_(order_ids))
                .order_by(col(OrderEvent.order_id), col(OrderEvent.seq).desc())
            )
            for order_id, status, at in events:
                if order_id in ended:
                    continue
                if status != current.get(order_id):
                    ended.add(order_id)
                    continue
                since[order_id] = _aware(at)
        return since

    # ---- the report ----------------------------------------------------------------------------

    @activity.defn(name="reconcile_finish")
    def finish(self, request: FinishRequest) -> ReconcileOutcome:
        """Close the run with its counts; once, count its discrepancies by kind and email the
        support mailbox when there are any (in the same transaction, through the outbox)."""
        run_id = request.run.run_id
        status = "incomplete" if request.incomplete else "finished"
        closed_now = False
        with Session(self._engine) as session:
            run = session.get(ReconciliationRun, run_id)
            assert run is not None, f"reconciliation run {run_id} has no row"
            found = {
                kind: int(n)
                for kind, n in session.exec(
                    select(ReconciliationDiscrepancy.kind, func.count())
                    .where(ReconciliationDiscrepancy.run_id == run_id)
                    .group_by(col(ReconciliationDiscrepancy.kind))
                ).all()
            }
            if run.status == "running":
                run.status, run.finished_at = status, datetime.now(UTC)
                run.checked = {**request.counts.checked}
                run.found = found
                key = f"reconciliation-{run_id}"
                if found or request.incomplete:
                    session.add(
                        outbox_row(
                            report_email(
                                self._mailer, session, run, request.incomplete, self._base_url
                            )
                        )
                    )
                session.commit()
                closed_now = True
        if closed_now:
            meter = activity.metric_meter()
            discrepancies = meter.create_counter(
                "ordermill_reconciliation_discrepancies",
                "Discrepancies the reconciliation found, by kind",
            )
            for kind, n in found.items():
                discrepancies.add(n, {"kind": kind})
            meter.create_counter(
                "ordermill_reconciliation_runs", "Reconciliation runs, by how they ended"
            ).add(1, {"outcome": "discrepancies" if found else status})
            if found or request.incomplete:
                self._sender.notify(key)
        return ReconcileOutcome(
            run_id=run_id, status=status, checked=request.counts.checked, found=found
        )


def _settled_outside(session: Session, order_ids: list[str]) -> set[str]:
    """Orders with a refund an operator settled outside the processor (from their view)."""
    if not order_ids:
        return set()
    views = session.exec(
        select(OrderRecord.order_id, OrderRecord.view_json).where(
            col(OrderRecord.order_id).in_(order_ids)
        )
    )
    return {
        order_id
        for order_id, view_json in views
        if any(r.get("settled_outside") for r in json.loads(view_json).get("refunds", []))
    }


def _stock_ledgers() -> Any:
    """Each stock row with the sums of its ledgers, as StockLedger's fields."""

    def total(column: Any, *where: Any) -> Any:
        return func.coalesce(select(func.sum(column)).where(*where).scalar_subquery(), 0)

    def same(table: Any) -> Any:
        return (table.sku == Stock.sku) & (table.warehouse == Stock.warehouse)

    return sql_select(
        col(Stock.sku),
        col(Stock.warehouse),
        col(Stock.on_hand),
        col(Stock.reserved),
        col(Stock.seeded),
        total(StockReceipt.quantity, same(StockReceipt)),
        total(
            StockReservation.quantity,
            same(StockReservation),
            col(StockReservation.status) == "committed",
        ),
        total(Restock.quantity, same(Restock)),
        total(
            StockReservation.quantity,
            same(StockReservation),
            col(StockReservation.status) == "held",
        ),
    )
