"""What the tracking page says about an order: its progress line, in the customer's words.

Plain functions over the order's view (its statuses and its timeline), unit-tested apart from
any page: the line follows what really happened, so a step is done when the timeline says so,
and an order that stopped (cancelled, declined, undeliverable) says where and why.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.holds import HoldCode
from models.orders import OrderStatus, OrderView
from models.shipments import CarrierStatus

STOPPED = {
    OrderStatus.CANCELLED: "Cancelled",
    OrderStatus.REJECTED: "Not accepted",
    OrderStatus.PAYMENT_DECLINED: "Payment declined",
    OrderStatus.DELIVERY_FAILED: "Not delivered",
}
# Reasons an order stopped, as a customer reads them; any other code is shown in words. An
# operator's note on a rejected hold is for the shop, never shown.
REASONS = {
    "card_declined": "your card was declined",
    "return_to_sender": "the carrier could not deliver it; it is coming back to us and you "
    "will be refunded",
    "review_timeout": "we could not complete our review in time",
    "backorder_timeout": "the items did not come back into stock in time",
    "out_of_stock": "the items are out of stock",
    "customer_blocked": "we cannot take orders for this account",
}
_OPERATOR_DECISION = re.compile(r"^[a-z_]+(-\d+)? rejected\b")


@dataclass(frozen=True)
class Step:
    label: str
    state: str  # done, current, todo or stopped
    at: datetime | None = None


def _first(view: OrderView, *events: str) -> datetime | None:
    return next((entry.at for entry in view.timeline if entry.event in events), None)


def is_digital_only(view: OrderView) -> bool:
    return bool(view.lines) and all(line.digital for line in view.lines)


def steps(view: OrderView) -> list[Step]:
    """Received, confirmed, paid, packed, shipped, delivered (digital orders skip the
    parcel's steps); done where the timeline has them, the next one current."""
    booked = [s for s in view.shipments if s.tracking_number]  # a label: packed, handed over
    delivered_at = _first(view, "delivered", "partially_delivered", "digital_delivery_sent")
    milestones: list[tuple[str, bool, datetime | None]] = [
        ("Received", True, view.placed_at),
        ("Confirmed", _first(view, "order_confirmed") is not None, _first(view, "order_confirmed")),
        (
            "Payment authorized",
            _first(view, "payment_authorized") is not None,
            _first(view, "payment_authorized"),
        ),
    ]
    if not is_digital_only(view):
        shipped_at = _first(view, "shipped")
        first_shipped = min((s.shipped_at for s in booked if s.shipped_at), default=None)
        milestones += [
            ("Packed", bool(booked), None),
            ("Shipped", shipped_at is not None, shipped_at or first_shipped),
        ]
    milestones.append(
        (
            "Delivered" if not is_digital_only(view) else "Delivered by download",
            delivered_at is not None and view.status is not OrderStatus.DELIVERY_FAILED,
            delivered_at,
        )
    )
    result, current_given = [], False
    stopped = STOPPED.get(view.status)
    for label, done, at in milestones:
        if done:
            result.append(Step(label, "done", at))
        elif not current_given:
            current_given = True
            if stopped is not None:
                result.append(Step(stopped, "stopped", view.updated_at))
            else:
                result.append(Step(label, "current"))
        else:
            result.append(Step(label, "todo"))
    if stopped is not None and not current_given:
        result.append(Step(stopped, "stopped", view.updated_at))
    return result


def headline(view: OrderView) -> str:
    """One sentence on where the order stands, holds, backorders and endings said plainly."""
    status = view.status
    open_holds = [h for h in view.holds if h.resolution is None]
    if status is OrderStatus.BACKORDERED or any(h.code is HoldCode.BACKORDER for h in open_holds):
        names = [line.name for line in view.lines if line.sku in view.backordered]
        waiting = ", ".join(names) or "an item"
        return f"Waiting for stock of {waiting}. We will email you as soon as it ships."
    if status is OrderStatus.ON_HOLD:
        return "We are checking your order before we pack it. We will email you when it moves on."
    if status in STOPPED:
        why = reason(view)
        return f"{STOPPED[status]}: {why}." if why else f"{STOPPED[status]}."
    return {
        OrderStatus.RECEIVED: "We have your order and are checking the stock.",
        OrderStatus.CONFIRMED: "Your order is confirmed.",
        OrderStatus.FULFILLING: "We are packing your order.",
        OrderStatus.PARTIALLY_SHIPPED: "Part of your order is on its way; the rest follows.",
        OrderStatus.SHIPPED: "Your order is on its way.",
        OrderStatus.DELIVERED: "Your order has been delivered.",
        OrderStatus.PARTIALLY_DELIVERED: "Part of your order was delivered; the rest could not be.",
        OrderStatus.PARTIALLY_RETURNED: "Part of your order has been returned.",
        OrderStatus.RETURNED: "Your order has been returned.",
        OrderStatus.COMPLETED: "Your order is complete.",
    }.get(status, f"Your order is {status.value.replace('_', ' ')}.")


def reason(view: OrderView) -> str | None:
    if view.reason is None:
        return None
    code, detail = view.reason.code, view.reason.detail or ""
    if code == "cancelled":
        if detail in REASONS:
            return REASONS[detail]
        if _OPERATOR_DECISION.match(detail):
            return "we could not accept it"
        return "cancelled as requested"
    return REASONS.get(code, code.replace("_", " "))


def parcel_state(status: CarrierStatus | None, tracking_number: str | None) -> str:
    if status is not None:
        return status.value.replace("_", " ")
    return "with the carrier" if tracking_number else "being packed"


def duration(span: timedelta) -> str:
    """`P30D` -> `30 days`; shorter spans (a test's, a demo's) in hours or minutes."""
    for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if (n := int(span.total_seconds() // seconds)) >= 1:
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return "a moment"
