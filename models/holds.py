"""Holds: why an order waits for an operator, and the operator's decision."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from models.text import ShortText


class HoldCode(StrEnum):
    """Why an order waits for an operator: something ordermill cannot decide alone."""

    CAPTURE_DECLINED = "capture_declined"  # the processor refused a parcel's capture
    REFUND_REFUSED = "refund_refused"  # the processor refused a refund
    RETRIES_EXHAUSTED = "retries_exhausted"  # an outside system stayed down past its bound
    DATA_REJECTED = "data_rejected"  # the database refused the order's data
    RISK_REVIEW = "risk_review"  # a large or flagged order: a person looks before it ships
    BACKORDER = "backorder"  # waiting for stock; released when it arrives, never by hand


class HoldResolution(StrEnum):
    RELEASED = "released"  # try the step again
    REJECTED = "rejected"  # give the step up, as the order's stage allows


class HoldView(BaseModel):
    """One hold; resolved ones stay in the list as the order's history."""

    hold_id: str = Field(description="The code for its first hold, then `code-2`, `code-3`...")
    code: HoldCode
    detail: str
    placed_at: datetime
    expires_at: datetime | None = Field(
        default=None, description="Rejected then, undecided (a review's or backorder's timeout)"
    )
    resolved_at: datetime | None = None
    resolution: HoldResolution | None = None
    reason: str | None = Field(default=None, description="The operator's words")
    timed_out: bool = False


class HoldDecision(BaseModel):
    """An operator's decision on one hold (the Update `resolve_hold`)."""

    hold_id: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}(-[0-9]{1,4})?$")]
    resolution: HoldResolution
    reason: ShortText | None = None
