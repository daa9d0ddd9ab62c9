"""WarehouseActivities.pick_and_pack heartbeats and stops when the order is cancelled."""

import asyncio
from datetime import timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from activities.warehouse import WarehouseActivities
from models.activities import PickPackInput
from models.shipments import ShipmentLine

PARCEL = PickPackInput(
    order_id="o-1",
    shipment_id="SHP-1",
    warehouse="WH-EAST",
    lines=[
        ShipmentLine(sku="BOOK-DUNE", quantity=2),
        ShipmentLine(sku="BOOK-NEUROMANCER", quantity=1),
    ],
)


async def test_pick_and_pack_packs_every_unit() -> None:
    parcel = await ActivityEnvironment().run(
        WarehouseActivities(timedelta(0)).pick_and_pack, PARCEL
    )
    assert (parcel.parcel_id, parcel.items) == ("PCL-o-1-SHP-1", 3)


async def test_pick_and_pack_heartbeats_and_honours_cancellation() -> None:
    env = ActivityEnvironment()
    beats: list[object] = []

    def on_heartbeat(*details: object) -> None:
        beats.append(details)
        env.cancel()  # the order was cancelled: the next heartbeat response says so

    env.on_heartbeat = on_heartbeat
    warehouse = WarehouseActivities(timedelta(hours=1))
    with pytest.raises(asyncio.CancelledError):
        await env.run(warehouse.pick_and_pack, PARCEL)
    assert len(beats) == 1
