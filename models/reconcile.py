"""The nightly reconciliation's payloads: what a run checks, what it found, its report."""

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field


class DiscrepancyKind(StrEnum):
    """Every kind a report may name; the README says what to do with each."""

    CAPTURE_EXCEEDS_AUTHORIZATION = "capture_exceeds_authorization"
    REFUND_EXCEEDS_CAPTURE = "refund_exceeds_capture"
    DUPLICATE_CAPTURE = "duplicate_capture"
    LEDGER_MISMATCH = "ledger_mismatch"
    STOCK_ON_HAND_MISMATCH = "stock_on_hand_mismatch"
    STOCK_RESERVED_MISMATCH = "stock_reserved_mismatch"
    STATUS_MISMATCH = "status_mismatch"
    STUCK_ORDER = "stuck_order"


class Discrepancy(BaseModel):
    kind: DiscrepancyKind
    subject: str = Field(
        description="What it is about: an order, an authorization, a SKU@warehouse"
    )
    detail: str = Field(description="What disagrees, with the figures")


class ReconcileInput(BaseModel):
    """How a run checks; the schedule's defaults suit a nightly run."""

    # The report's id: the API names the run it starts; a scheduled run takes its workflow's.
    run_id: str | None = Field(default=None, max_length=64)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    # An order that changed this recently may be between two of its writes (the ledger, then
    # its read model): it is checked by the next run instead.
    settle: timedelta = timedelta(minutes=10)
    # Longer in a stage than that stage can take is stuck (`received` never takes an hour).
    received_limit: timedelta = timedelta(hours=1)
    # Unset, the workflow takes pick/pack's every attempt and backoff and the carrier's booking.
    fulfilling_limit: timedelta | None = None


class RunStarted(BaseModel):
    run_id: str
    started_at: datetime
    # Checks count from here: orders changed after it (less `settle`) wait for the next run.
    cutoff: datetime


class CheckRequest(BaseModel):
    run: RunStarted
    settings: ReconcileInput


class CheckCounts(BaseModel):
    """What the checks looked at, by name: `orders`, `ledger_rows`, `stock_rows`, ..."""

    checked: dict[str, int] = Field(default_factory=dict)


class FinishRequest(BaseModel):
    run: RunStarted
    counts: CheckCounts
    incomplete: list[str] = Field(default_factory=list, description="Checks that failed")


class ReconcileOutcome(BaseModel):
    """The workflow's result: the report without its discrepancies (they are in the table)."""

    run_id: str
    status: str
    checked: dict[str, int]
    found: dict[str, int]


class ReconciliationReport(BaseModel):
    run_id: str
    status: str = Field(description="running or finished")
    started_at: datetime
    finished_at: datetime | None
    checked: dict[str, int] = Field(description="What was checked, by what: orders, stock rows")
    found: dict[str, int] = Field(description="Discrepancies found, by kind")
    discrepancies: list[Discrepancy] = Field(
        description="The discrepancies, the first ones of each kind if there were very many"
    )
