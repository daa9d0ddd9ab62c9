"""The words of every email ordermill sends, one function per kind."""

from collections.abc import Callable

from models.activities import EmailKind
from models.orders import InquiryView, OrderView, RefundView, ReturnView, money


def _lines(order: OrderView) -> str:
    rows = [
        f"  {line.quantity} x {line.name} ({line.sku})  {money(line.line_total)}"
        for line in order.lines
    ]
    if order.totals:
        rows.append(f"  Shipping  {money(order.totals.shipping)}")
        rows.append(f"  Total     {money(order.totals.total, order.totals.currency)}")
    return "\n".join(rows)


def _confirmation(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    return (
        f"Order {order.order_id} confirmed",
        f"Thank you for your order. We have reserved your items:\n\n{_lines(order)}\n\n"
        "We will email you again when it ships.",
    )


def _digital_delivery(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    return (
        f"Your downloads for order {order.order_id}",
        "Your digital items are ready:\n\n" + "\n".join(f"  {link}" for link in links),
    )


def _shipped(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    shipment = order.shipment
    tracking = f"{shipment.carrier} {shipment.tracking_number}" if shipment else "unknown"
    return (
        f"Order {order.order_id} has shipped",
        f"Your parcel is on its way. Tracking number: {tracking}\n\n{_lines(order)}",
    )


def _delivered(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    window = (
        f"You can return items until {order.return_window_ends_at:%Y-%m-%d}."
        if order.return_window_ends_at
        else ""
    )
    return (f"Order {order.order_id} was delivered", f"Your order has arrived. {window}")


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


def _cancelled(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    return (
        f"Order {order.order_id} is cancelled",
        "Your order is cancelled as requested. Any payment hold on your card is released.",
    )


def _delivery_failed(order: OrderView, links: list[str], ref: str | None) -> tuple[str, str]:
    refunded = money(order.payment.refunded)
    return (
        f"We could not deliver order {order.order_id}",
        f"The carrier could not deliver your parcel. We have refunded {refunded} to your card.",
    )


def _return_of(order: OrderView, ref: str | None) -> ReturnView:
    return next(r for r in order.returns if r.return_id == ref)


def _refund_of(order: OrderView, ref: str | None) -> RefundView:
    return next(r for r in order.refunds if r.refund_id == ref)


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
    shipment = ret.exchange_shipment
    tracking = f"{shipment.carrier} {shipment.tracking_number}" if shipment else "unknown"
    return (
        f"Your replacement for order {order.order_id} has shipped",
        f"We received your return and sent the replacement, free of charge:\n\n"
        f"{_return_items(ret)}\n\nTracking number: {tracking}",
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


TEMPLATES: dict[EmailKind, Callable[[OrderView, list[str], str | None], tuple[str, str]]] = {
    EmailKind.CONFIRMATION: _confirmation,
    EmailKind.DIGITAL_DELIVERY: _digital_delivery,
    EmailKind.SHIPPED: _shipped,
    EmailKind.DELIVERED: _delivered,
    EmailKind.PAYMENT_DECLINED: _payment_declined,
    EmailKind.REJECTED: _rejected,
    EmailKind.CANCELLED: _cancelled,
    EmailKind.DELIVERY_FAILED: _delivery_failed,
    EmailKind.RETURN_LABEL: _return_label,
    EmailKind.RETURN_REFUNDED: _return_refunded,
    EmailKind.EXCHANGE_SHIPPED: _exchange_shipped,
    EmailKind.RETURN_NOT_RECEIVED: _return_not_received,
    EmailKind.REFUND_ISSUED: _refund_issued,
}


def render(
    kind: EmailKind,
    customer_name: str,
    order: OrderView,
    links: list[str],
    *,
    reference: str | None = None,
) -> tuple[str, str]:
    subject, body = TEMPLATES[kind](order, links, reference)
    return subject, f"Hello {customer_name},\n\n{body}\n\n-- ordermill\n"


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
        f"Recent timeline:\n{timeline}\n\nFull order:\n{order.model_dump_json(indent=2)}\n",
    )
