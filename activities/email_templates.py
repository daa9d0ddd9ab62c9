"""The words of every email ordermill sends, one function per kind."""

from collections.abc import Callable

from models.activities import EmailKind
from models.orders import OrderView, money


def _lines(order: OrderView) -> str:
    rows = [
        f"  {line.quantity} x {line.name} ({line.sku})  {money(line.line_total)}"
        for line in order.lines
    ]
    if order.totals:
        rows.append(f"  Shipping  {money(order.totals.shipping)}")
        rows.append(f"  Total     {money(order.totals.total, order.totals.currency)}")
    return "\n".join(rows)


def _confirmation(order: OrderView, links: list[str]) -> tuple[str, str]:
    return (
        f"Order {order.order_id} confirmed",
        f"Thank you for your order. We have reserved your items:\n\n{_lines(order)}\n\n"
        "We will email you again when it ships.",
    )


def _digital_delivery(order: OrderView, links: list[str]) -> tuple[str, str]:
    return (
        f"Your downloads for order {order.order_id}",
        "Your digital items are ready:\n\n" + "\n".join(f"  {link}" for link in links),
    )


def _shipped(order: OrderView, links: list[str]) -> tuple[str, str]:
    shipment = order.shipment
    tracking = f"{shipment.carrier} {shipment.tracking_number}" if shipment else "unknown"
    return (
        f"Order {order.order_id} has shipped",
        f"Your parcel is on its way. Tracking number: {tracking}\n\n{_lines(order)}",
    )


def _delivered(order: OrderView, links: list[str]) -> tuple[str, str]:
    window = (
        f"You can return items until {order.return_window_ends_at:%Y-%m-%d}."
        if order.return_window_ends_at
        else ""
    )
    return (f"Order {order.order_id} was delivered", f"Your order has arrived. {window}")


def _payment_declined(order: OrderView, links: list[str]) -> tuple[str, str]:
    reason = order.reason.detail if order.reason else "the payment was declined"
    return (
        f"Payment for order {order.order_id} was declined",
        f"We could not take payment: {reason}. Nothing was charged and your order is closed; "
        "please place it again with another card.",
    )


def _rejected(order: OrderView, links: list[str]) -> tuple[str, str]:
    reason = order.reason.detail if order.reason else "we could not accept it"
    return (
        f"We could not accept order {order.order_id}",
        f"We are sorry: {reason}. Nothing was charged.",
    )


def _cancelled(order: OrderView, links: list[str]) -> tuple[str, str]:
    return (
        f"Order {order.order_id} is cancelled",
        "Your order is cancelled as requested. Any payment hold on your card is released.",
    )


def _delivery_failed(order: OrderView, links: list[str]) -> tuple[str, str]:
    refunded = money(order.payment.refunded)
    return (
        f"We could not deliver order {order.order_id}",
        f"The carrier could not deliver your parcel. We have refunded {refunded} to your card.",
    )


TEMPLATES: dict[EmailKind, Callable[[OrderView, list[str]], tuple[str, str]]] = {
    EmailKind.CONFIRMATION: _confirmation,
    EmailKind.DIGITAL_DELIVERY: _digital_delivery,
    EmailKind.SHIPPED: _shipped,
    EmailKind.DELIVERED: _delivered,
    EmailKind.PAYMENT_DECLINED: _payment_declined,
    EmailKind.REJECTED: _rejected,
    EmailKind.CANCELLED: _cancelled,
    EmailKind.DELIVERY_FAILED: _delivery_failed,
}


def render(
    kind: EmailKind, customer_name: str, order: OrderView, links: list[str]
) -> tuple[str, str]:
    subject, body = TEMPLATES[kind](order, links)
    return subject, f"Hello {customer_name},\n\n{body}\n\n-- ordermill\n"
