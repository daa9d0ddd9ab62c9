"""A warehouse picks and packs one parcel of an order's physical lines."""

import asyncio
from datetime import timedelta

from temporalio import activity

from models.activities import Parcel, PickPackInput

HEARTBEAT_EVERY = timedelta(seconds=1)


class WarehouseActivities:
    """Simulates pick and pack taking `fulfillment_delay` (the FULFILLMENT_DELAY setting).

    It heartbeats while it works, so a crashed worker is noticed within the heartbeat timeout
    and a cancelled order stops it at the next beat.
    """

    def __init__(self, fulfillment_delay: timedelta) -> None:
        self._delay = fulfillment_delay

    @activity.defn(name="pick_and_pack")
    async def pick_and_pack(self, request: PickPackInput) -> Parcel:
        remaining = self._delay.total_seconds()
        while remaining > 0:
            activity.heartbeat(f"{remaining:.0f}s of picking left")
            step = min(remaining, HEARTBEAT_EVERY.total_seconds())
            await asyncio.sleep(step)  # raises CancelledError when the order is cancelled
            remaining -= step
        units = sum(line.quantity for line in request.lines)
        return Parcel(parcel_id=f"PCL-{request.order_id}-{request.shipment_id}", items=units)
