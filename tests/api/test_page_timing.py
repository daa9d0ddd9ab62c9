"""How long the server takes to render the tracking page of a long-lived order: 50 timeline
entries, three parcels with their events, a return. Measured and reported, never asserted
(timing belongs to `make bench`'s kind of evidence, not to a pass/fail test)."""

import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import Session

from activities.tracking_links import TrackingLinks
from models.orders import (
    DeliveryOption,
    OrderItem,
    OrderLine,
    OrderStatus,
    OrderView,
    TimelineEntry,
)
from models.projection import placed_order_record
from models.shipments import CarrierEvent, CarrierStatus, ShipmentLine, ShipmentView
from tests.conftest import E2EStack, new_id

RENDERS = 30


def long_order(order_id: str) -> OrderView:
    t0 = datetime.now(UTC) - timedelta(days=3)
    parcels = [
        ShipmentView(
            shipment_id=f"SHP-{n}",
            warehouse="WH-EAST",
            lines=[ShipmentLine(sku="BOOK-DUNE", quantity=1)],
            status=CarrierStatus.DELIVERED,
            carrier="simulated-carrier",
            tracking_number=f"OM{n}{order_id[-8:]}",
            shipped_at=t0,
            events=[
                CarrierEvent(
                    event_id=f"e{n}-{i}",
                    tracking_number=f"OM{n}{order_id[-8:]}",
                    status=status,
                    occurred_at=t0 + timedelta(hours=i),
                )
                for i, status in enumerate(
                    [CarrierStatus.PRE_TRANSIT, CarrierStatus.IN_TRANSIT, CarrierStatus.DELIVERED]
                )
            ],
        )
        for n in (1, 2, 3)
    ]
    return OrderView(
        order_id=order_id,
        customer_id="cus_ada",
        status=OrderStatus.DELIVERED,
        items=[OrderItem(sku="BOOK-DUNE", quantity=3)],
        lines=[OrderLine(sku="BOOK-DUNE", name="Dune", quantity=3, unit_price=1899, digital=False)],
        delivery=DeliveryOption.STANDARD,
        shipments=parcels,
        timeline=[
            TimelineEntry(
                at=t0 + timedelta(minutes=i), event=f"note_{i}", status=OrderStatus.SHIPPED
            )
            for i in range(50)
        ],
        placed_at=t0,
        updated_at=t0 + timedelta(days=1),
        delivered_at=t0 + timedelta(days=1),
        return_window_ends_at=t0 + timedelta(days=31),
    )


async def test_report_the_tracking_page_s_server_time_for_fifty_timeline_entries(
    e2e_stack: E2EStack, api: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    order_id = new_id("ord-long").replace("-", "_")
    view = long_order(order_id)
    with Session(e2e_stack.engine) as session:
        session.add(placed_order_record(view))
        session.commit()
    settings = e2e_stack.settings
    path = TrackingLinks(
        settings.public_base_url, settings.tracking_secret, settings.tracking_link_ttl
    ).path(order_id, view.placed_at)
    times = []
    for _ in range(RENDERS):
        started = time.perf_counter()
        response = await api.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    with capsys.disabled():
        print(
            f"\ntracking page, 50 timeline entries and 3 parcels: median "
            f"{statistics.median(times):.1f} ms, slowest {max(times):.1f} ms over {RENDERS} "
            "renders (in-process, read model on SQLite)"
        )
