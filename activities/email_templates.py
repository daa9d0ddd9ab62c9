"""The words of every email ordermill sends, one function per kind.

An order ships in parcels, one per warehouse: the emails about its shipping name the parcels
and what is in each.
"""

from collections.abc import Callable

from models.activities import SUPPORT_EMAILS, EmailKind
from models.orders import InquiryView, OrderView, RefundKind, RefundView, ReturnView, money
from models.shipments import CarrierStatus, ShipmentView


def _lines(order: OrderView) -> str:
    rows = [
        f"  {line.quantity} x {line.name} ({line.sku})  {money(line.line_total)}"
        for line in order.lines
    ]
    if order.totals:
        rows.append(f"  Shipping  {money(order.totals.shipping)}")
        rows.append(f"  Total     {money(order.totals.total, order.totals.currency)}")
    return "\n".join(rows)


def _shipment_of(order: OrderView, ref: str | None) -> ShipmentView:
    found = next((s for s in order.shipments if s.shipment_id == ref), None)
    if found is None:
        raise LookupError(f"order {order.order_id} has no parcel {ref}")
    return found


def _parcel_items(order: OrderView, shipment: ShipmentView) -> str:
    names = {line.sku: line.name for line in order.lines}
    return "\n".join(
        f"  {line.quantity} x {names.get(line.sku, line.sku)} ({line.sku})"
        for line in shipment.lines
    )


def _tracking(shipment: ShipmentView | None) -> str:
    if shipment is None or shipment.tracking_number is None:
        return "to follow"
    return " ".join(filter(None, [shipment.carrier, shipment.tracking_number]))


def _parcels(order: OrderView, shipments: list[ShipmentView]) -> str:
    """Each parcel with its tracking number and what is in it."""
    return "\n\n".join(
        f"Parcel {s.shipment_id} (tracking {_tracking(s)}):\n{_parcel_items(order, s)}"
        for s in shipments
    )


def _confirmation(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    parcels = len(order.shipments)
    when = (
        f"Your items ship in {parcels} parcels; we will email you as each one leaves."
        if parcels > 1
        else "We will email you again when it ships."
    )
    if order.backordered:
        return (
            f"Order {order.order_id} confirmed: backordered",
            f"Thank you for your order:\n\n{_lines(order)}\n\n"
            f"{', '.join(order.backordered)} is not in stock yet, so your order is backordered: "
            "we hold your place in line and ship it as soon as the stock arrives. Your card is "
            "authorized, not charged, until then; you may cancel at any time before it ships.",
        )
    return (
        f"Order {order.order_id} confirmed",
        f"Thank you for your order. We have reserved your items:\n\n{_lines(order)}\n\n{when}",
    )


def _digital_delivery(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    return (
        f"Your downloads for order {order.order_id}",
        "Your digital items are ready:\n\n" + "\n".join(f"  {link}" for link in links),
    )


def _shipped(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    """One email per parcel, as each is handed to the carrier: `ref` is its shipment id."""
    shipment = _shipment_of(order, ref)
    of = (
        f" ({order.shipments.index(shipment) + 1} of {len(order.shipments)})"
        if len(order.shipments) > 1
        else ""
    )
    return (
        f"Order {order.order_id}: parcel {shipment.shipment_id} has shipped",
        f"Your parcel{of} is on its way. Tracking number: {_tracking(shipment)}\n\n"
        f"In this parcel:\n{_parcel_items(order, shipment)}",
    )


def _return_window(order: OrderView) -> str:
    return (
        f"You can return items until {order.return_window_ends_at:%Y-%m-%d}."
        if order.return_window_ends_at
        else ""
    )


def _arrived(order: OrderView) -> list[ShipmentView]:
    return [s for s in order.shipments if s.status == CarrierStatus.DELIVERED]


def _delivered(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    arrived = _arrived(order) or order.shipments
    what = f":\n\n{_parcels(order, arrived)}\n\n" if arrived else ". "
    return (
        f"Order {order.order_id} was delivered",
        f"Your order has arrived{what}{_return_window(order)}",
    )


def _partially_delivered(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    """Some parcels arrived and the rest never will: the carrier failed or sent them back."""
    arrived = _arrived(order)
    failed = [s for s in order.shipments if s.status != CarrierStatus.DELIVERED]
    refunded = sum(r.amount for r in order.refunds if r.kind == RefundKind.DELIVERY_FAILED)
    refund = (
        f"We have refunded {money(refunded)} to your card for their items."
        if refunded
        else "We are refunding their items to your card."
    )
    return (
        f"Part of order {order.order_id} was delivered",
        f"These parcels have arrived:\n\n{_parcels(order, arrived)}\n\n"
        f"The carrier could not deliver these:\n\n{_parcels(order, failed)}\n\n"
        f"{refund} {_return_window(order)}",
    )


def _payment_declined(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    reason = order.reason.detail if order.reason else "the payment was declined"
    return (
        f"Payment for order {order.order_id} was declined",
        f"We could not take payment: {reason}. Nothing was charged and your order is closed; "
        "please place it again with another card.",
    )


def _rejected(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    reason = order.reason.detail if order.reason else "we could not accept it"
    return (
        f"We could not accept order {order.order_id}",
        f"We are sorry: {reason}. Nothing was charged.",
    )


# Why an order was cancelled other than at the customer's request, in the customer's words.
_CANCELLED_BECAUSE = {
    "backorder_timeout": "the backordered items did not arrive in time",
    "review_timeout": "we could not complete our checks of it in time",
}


def _cancelled(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    detail = order.reason.detail if order.reason else ""
    because = _CANCELLED_BECAUSE.get(detail) or (
        "we could not complete our checks of it" if detail.startswith("risk_review") else None
    )
    why = f"Your order is cancelled: {because}." if because else "Your order is cancelled."
    return (
        f"Order {order.order_id} is cancelled",
        f"{why} Nothing was charged, and any payment hold on your card is released.",
    )


def _delivery_failed(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    refunded = money(order.payment.refunded)
    parcels = "your parcels" if len(order.shipments) > 1 else "your parcel"
    return (
        f"We could not deliver order {order.order_id}",
        f"The carrier could not deliver {parcels}. We have refunded {refunded} to your card.",
    )


def _return_of(order: OrderView, ref: str | None) -> ReturnView:
    found = next((r for r in order.returns if r.return_id == ref), None)
    if found is None:
        raise LookupError(f"order {order.order_id} has no return {ref}")
    return found


def _refund_of(order: OrderView, ref: str | None) -> RefundView:
    found = next((r for r in order.refunds if r.refund_id == ref), None)
    if found is None:
        raise LookupError(f"order {order.order_id} has no refund {ref}")
    return found


def _return_items(ret: ReturnView) -> str:
    return "\n".join(f"  {line.quantity} x {line.sku}" for line in ret.lines)


def _return_label(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    ret = _return_of(order, ref)
    return (
        f"Your return {ret.return_id} for order {order.order_id}",
        f"We have booked the return of:\n\n{_return_items(ret)}\n\n"
        f"Hand the parcel to the carrier with return tracking number {ret.tracking_number}. "
        f"We will {'refund you' if ret.resolution == 'refund' else 'send the replacement'} "
        "as soon as it reaches our warehouse.",
    )


def _return_refunded(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    ret = _return_of(order, ref)
    received = "Your downloads are now disabled." if ret.digital else "We received your return."
    return (
        f"Refund of {money(ret.refund_amount)} for order {order.order_id}",
        f"{received} We have refunded {money(ret.refund_amount)} to your card for:\n\n"
        f"{_return_items(ret)}",
    )


def _exchange_shipped(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    ret = _return_of(order, ref)
    return (
        f"Your replacement for order {order.order_id} has shipped",
        f"We received your return and sent the replacement, free of charge:\n\n"
        f"{_return_items(ret)}\n\nTracking number: {_tracking(ret.exchange_shipment)}",
    )


def _return_not_received(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    ret = _return_of(order, ref)
    return (
        f"Return {ret.return_id} for order {order.order_id} is closed",
        f"Your return parcel (tracking {ret.tracking_number}) never reached us, so we have "
        "closed the return without a refund. Reply to this email if you have sent it.",
    )


def _refund_issued(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    refund = _refund_of(order, ref)
    return (
        f"Refund of {money(refund.amount)} for order {order.order_id}",
        f"We have refunded {money(refund.amount)} to your card: {refund.reason}.",
    )


def _hold_placed(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    """For the support team: what waits for a decision, and how to decide it."""
    (hold,) = [h for h in order.holds if h.hold_id == ref]
    decide = f"/orders/{order.order_id}/holds/{hold.hold_id}"
    return (
        f"[{order.order_id}] On hold: {hold.code.value}",
        f"Order {order.order_id} ({order.status.value}) waits for an operator.\n\n"
        f"{hold.hold_id}: {hold.detail}\n\n"
        f"Release it (the step is tried again): POST {decide}/release\n"
        f'Reject it (the step is given up):     POST {decide}/reject {{"reason": ...}}\n',
    )


TEMPLATES: dict[EmailKind, Callable[[OrderView, list[str], str | None], tuple[str, str]]] = {
    EmailKind.CONFIRMATION: _confirmation,
    EmailKind.DIGITAL_DELIVERY: _digital_delivery,
    EmailKind.SHIPPED: _shipped,
    EmailKind.DELIVERED: _delivered,
    EmailKind.PARTIALLY_DELIVERED: _partially_delivered,
    EmailKind.PAYMENT_DECLINED: _payment_declined,
    EmailKind.REJECTED: _rejected,
    EmailKind.CANCELLED: _cancelled,
    EmailKind.DELIVERY_FAILED: _delivery_failed,
    EmailKind.RETURN_LABEL: _return_label,
    EmailKind.RETURN_REFUNDED: _return_refunded,
    EmailKind.EXCHANGE_SHIPPED: _exchange_shipped,
    EmailKind.RETURN_NOT_RECEIVED: _return_not_received,
    EmailKind.REFUND_ISSUED: _refund_issued,
    EmailKind.HOLD_PLACED: _hold_placed,
}


def render(
    kind: EmailKind,
    customer_name: str,
    order: OrderView,
    links: list[str],
    *,
    reference: str | None = None,
    tracking: str | None = None,
) -> tuple[str, str]:
    """`tracking`: the order's tracking page, at the foot of every customer's email."""
    subject, body = TEMPLATES[kind](order, links, reference)
    if kind in SUPPORT_EMAILS:
        return subject, f"{body}\n-- ordermill\n"
    follow = f"\n\nFollow your order at any time: {tracking}" if tracking else ""
    return subject, f"Hello {customer_name},\n\n{body}{follow}\n\n-- ordermill\n"


def render_support_inquiry(inquiry: InquiryView, order: OrderView) -> tuple[str, str]:
    """For the support team: the question first, then the order's state to answer it."""
    timeline = "\n".join(
        f"  {entry.at:%Y-%m-%d %H:%M} {entry.event} ({entry.status.value}) {entry.detail}"
        for entry in order.timeline[-20:]
    )
    return (
        f"[{order.order_id}] Customer question ({order.status.value})",
        f"Customer {order.customer_id} asks:\n\n{inquiry.message}\n\n"
        f"Order {order.order_id}: {order.status.value}\n{_lines(order)}\n\n"
        f"Recent timeline:\n{timeline}\n\n"
        # Without its questions and timeline: the earlier questions had emails of their own.
        f"Full order:\n{order.model_dump_json(indent=2, exclude={'inquiries', 'timeline'})}\n",
    )
