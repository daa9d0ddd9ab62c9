"""The reconciliation's rules, as plain functions over rows already read: what must add up.

Each returns the discrepancies it finds, one per kind and subject; the activities in
`activities/reconcile.py` read the rows in batches and store what these return.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.orders import OrderStatus
from models.reconcile import Discrepancy, DiscrepancyKind
from models.tables import PaymentTransaction


@dataclass(frozen=True)
class RecordedMoney:
    """What the order's read model says was captured and refunded."""

    captured: int
    refunded: int
    # A refund an operator settled outside the processor is in `refunded` but not the ledger.
    settled_outside: bool = False


def order_money(
    order_id: str, ledger: Iterable[PaymentTransaction], recorded: RecordedMoney
) -> list[Discrepancy]:
    """One order's approved ledger rows against its authorizations and its read model."""
    authorized: dict[str, int] = {}
    captured: dict[str, int] = defaultdict(int)
    refunded: dict[str, int] = defaultdict(int)
    parcels: dict[str, list[str]] = defaultdict(list)
    for row in ledger:
        if row.status != "approved":
            continue
        if row.kind == "authorize":
            authorized[row.id] = row.amount
        elif row.kind == "capture" and row.authorization_id:
            captured[row.authorization_id] += row.amount
            parcels[row.shipment_id or "digital lines"].append(row.id)
        elif row.kind == "refund" and row.authorization_id:
            refunded[row.authorization_id] += row.amount
    found = []
    for authorization_id in sorted(set(authorized) | set(captured) | set(refunded)):
        limit, took, gave = (
            authorized.get(authorization_id, 0),
            captured[authorization_id],
            refunded[authorization_id],
        )
        if took > limit:
            found.append(
                Discrepancy(
                    kind=DiscrepancyKind.CAPTURE_EXCEEDS_AUTHORIZATION,
                    subject=authorization_id,
                    detail=f"order {order_id}: captured {took} of {limit} authorized",
                )
            )
        if gave > took:
            found.append(
                Discrepancy(
                    kind=DiscrepancyKind.REFUND_EXCEEDS_CAPTURE,
                    subject=authorization_id,
                    detail=f"order {order_id}: refunded {gave} of {took} captured",
                )
            )
    for parcel, captures in sorted(parcels.items()):
        if len(captures) > 1:
            found.append(
                Discrepancy(
                    kind=DiscrepancyKind.DUPLICATE_CAPTURE,
                    subject=f"{order_id}/{parcel}",
                    detail=f"{len(captures)} captures of one parcel: "
                    + ", ".join(sorted(captures)),
                )
            )
    total_captured, total_refunded = sum(captured.values()), sum(refunded.values())
    wrong = []
    if total_captured != recorded.captured:
        wrong.append(f"captured {total_captured} in the ledger, {recorded.captured} recorded")
    refund_wrong = (
        total_refunded > recorded.refunded
        if recorded.settled_outside
        else total_refunded != recorded.refunded
    )
    if refund_wrong:
        wrong.append(f"refunded {total_refunded} in the ledger, {recorded.refunded} recorded")
    if wrong:
        found.append(
            Discrepancy(
                kind=DiscrepancyKind.LEDGER_MISMATCH, subject=order_id, detail="; ".join(wrong)
            )
        )
    return found


@dataclass(frozen=True)
class StockLedger:
    """One product's row in one warehouse, and the sums of its ledgers."""

    sku: str
    warehouse: str
    on_hand: int
    reserved: int
    seeded: int
    received: int
    committed: int
    restocked: int
    held: int  # units of open (held) reservations


def stock_row(row: StockLedger) -> list[Discrepancy]:
    """seeded + received - committed + restocked = on hand; reserved = open reservations."""
    subject = f"{row.sku}@{row.warehouse}"
    expected = row.seeded + row.received - row.committed + row.restocked
    found = []
    if row.on_hand != expected:
        found.append(
            Discrepancy(
                kind=DiscrepancyKind.STOCK_ON_HAND_MISMATCH,
                subject=subject,
                detail=f"on hand {row.on_hand}; the ledgers give {expected} (seeded {row.seeded}"
                f" + received {row.received} - committed {row.committed}"
                f" + restocked {row.restocked})",
            )
        )
    if row.reserved != row.held:
        found.append(
            Discrepancy(
                kind=DiscrepancyKind.STOCK_RESERVED_MISMATCH,
                subject=subject,
                detail=f"reserved {row.reserved}; open reservations hold {row.held}",
            )
        )
    return found


def status_mismatch(
    order_id: str, recorded: str, workflow_status: str | None, searchable: str | None
) -> Discrepancy | None:
    """An open order's read model against its workflow, as visibility lists it: running, with
    the same `OrderStatus`. `workflow_status` is None when no workflow was found."""
    if workflow_status is None:
        detail = f"the read model says {recorded}, and there is no workflow for the order"
    elif workflow_status != "RUNNING":
        detail = f"the read model says {recorded}, but the workflow is {workflow_status.lower()}"
    elif searchable != recorded:
        detail = f"the read model says {recorded}, the OrderStatus search attribute {searchable}"
    else:
        return None
    return Discrepancy(kind=DiscrepancyKind.STATUS_MISMATCH, subject=order_id, detail=detail)


def stuck(
    order_id: str,
    status: str,
    since: datetime,
    now: datetime,
    limits: dict[OrderStatus, timedelta],
) -> Discrepancy | None:
    """In a stage longer than the stage can take (and waiting on no hold: callers skip those)."""
    limit = limits.get(OrderStatus(status))
    if limit is None or now - since <= limit:
        return None
    hours = (now - since).total_seconds() / 3600
    return Discrepancy(
        kind=DiscrepancyKind.STUCK_ORDER,
        subject=order_id,
        detail=f"{status} for {hours:.1f} h (since {since.isoformat()}), "
        f"longer than the {limit} that stage can take",
    )
