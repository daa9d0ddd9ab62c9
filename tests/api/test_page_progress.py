"""What the tracking page says about an order (api.pages.progress): plain rules, no browser."""

from datetime import UTC, datetime, timedelta

from api.pages.progress import duration, headline, steps
from models.holds import HoldCode, HoldView
from models.orders import (
    DeliveryOption,
    OrderItem,
    OrderLine,
    OrderStatus,
    OrderView,
    Problem,
    TimelineEntry,
)
from models.shipments import ShipmentView

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def view(status: OrderStatus, events: list[str], **more: object) -> OrderView:
    return OrderView.model_validate(
        {
            "order_id": "ord_1",
            "customer_id": "cus_ada",
            "status": status,
            "items": [OrderItem(sku="BOOK-DUNE", quantity=1)],
            "lines": [
                OrderLine(sku="BOOK-DUNE", name="Dune", quantity=1, unit_price=1899, digital=False)
            ],
            "delivery": DeliveryOption.STANDARD,
            "placed_at": T0,
            "updated_at": T0 + timedelta(hours=1),
            "timeline": [
                TimelineEntry(at=T0 + timedelta(minutes=i), event=e, status=status)
                for i, e in enumerate(events)
            ],
            **more,
        }
    )


def states(order: OrderView) -> list[tuple[str, str]]:
    return [(step.label, step.state) for step in steps(order)]


def test_the_line_follows_the_timeline_and_the_next_step_is_current() -> None:
    shipped = view(
        OrderStatus.SHIPPED,
        ["order_received", "order_confirmed", "payment_authorized", "shipped"],
        shipments=[ShipmentView(shipment_id="SHP-1", tracking_number="OM1", carrier="c")],
    )
    assert states(shipped) == [
        ("Received", "done"),
        ("Confirmed", "done"),
        ("Payment authorized", "done"),
        ("Packed", "done"),
        ("Shipped", "done"),
        ("Delivered", "current"),
    ]
    assert steps(shipped)[4].at == T0 + timedelta(minutes=3)


def test_a_stopped_order_says_where_it_stopped_and_why_in_plain_words() -> None:
    declined = view(
        OrderStatus.PAYMENT_DECLINED,
        ["order_received", "order_confirmed"],
        reason=Problem(code="card_declined", detail="the card was declined"),
    )
    assert states(declined)[2:] == [
        ("Payment declined", "stopped"),
        ("Packed", "todo"),
        ("Shipped", "todo"),
        ("Delivered", "todo"),
    ]
    assert headline(declined) == "Payment declined: your card was declined."


def test_an_operator_s_note_on_a_rejected_review_is_never_shown_to_the_customer() -> None:
    rejected = view(
        OrderStatus.CANCELLED,
        ["order_received", "order_confirmed", "payment_authorized"],
        reason=Problem(code="cancelled", detail="risk_review rejected: card testing"),
    )
    assert headline(rejected) == "Cancelled: we could not accept it."
    assert "card testing" not in headline(rejected)


def test_holds_and_backorders_are_said_plainly() -> None:
    review = HoldView(hold_id="risk_review", code=HoldCode.RISK_REVIEW, detail="x", placed_at=T0)
    held = view(OrderStatus.ON_HOLD, ["order_received"], holds=[review])
    assert headline(held).startswith("We are checking your order before we pack it.")
    waiting = view(OrderStatus.BACKORDERED, ["order_received"], backordered=["BOOK-DUNE"])
    assert headline(waiting) == "Waiting for stock of Dune. We will email you as soon as it ships."


def test_a_digital_order_is_delivered_by_download_with_no_parcel_steps() -> None:
    ebook = view(
        OrderStatus.COMPLETED,
        ["order_received", "order_confirmed", "payment_authorized", "digital_delivery_sent"],
        lines=[OrderLine(sku="EBOOK", name="Dune", quantity=1, unit_price=999, digital=True)],
    )
    assert states(ebook) == [
        ("Received", "done"),
        ("Confirmed", "done"),
        ("Payment authorized", "done"),
        ("Delivered by download", "done"),
    ]


def test_durations_read_as_people_say_them() -> None:
    assert duration(timedelta(days=30)) == "30 days"
    assert duration(timedelta(minutes=5)) == "5 minutes"
    assert duration(timedelta(hours=1)) == "1 hour"
