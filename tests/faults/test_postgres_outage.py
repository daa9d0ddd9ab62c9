"""PostgreSQL refusing connections for 20 s while orders are in flight.

The worker reaches a database of the test's own through a TCP proxy in the test. The proxy stops
(the port refuses, every open connection is cut) when one order has both parcels in pick/pack
and another is shipped; during the outage a third order is placed and the shipped one is
delivered, so the outage meets a booking, a capture, a customer check and a delivery record.
The bounded retries of workflows/policies.py outlast it: no order is held, none fails, and each
ends completed with one authorization and one capture per parcel.
"""

import asyncio

import pytest
from sqlalchemy import make_url
from temporalio.client import Client
from temporalio.service import RPCError

from models.orders import OrderStatus
from tests.faults.conftest import (
    ONE_PARCEL,
    TWO_PARCELS,
    Handle,
    TcpProxy,
    Workers,
    activity_started,
    assert_settled,
    deliver,
    eventually,
    place,
    reaches,
    settle,
    view,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

OUTAGE = 20.0  # seconds


async def retrying(handle: Handle, activity: str) -> bool:
    """Whether `activity` has failed at least once and waits for (or runs) its next attempt."""
    try:
        description = await handle.describe()
    except RPCError:
        return False
    return any(
        pending.activity_type.name == activity and pending.attempt >= 2
        for pending in description.raw_description.pending_activities
    )


async def test_orders_survive_twenty_seconds_without_postgres(
    client: Client, workers: Workers, postgres_url: str
) -> None:
    target = make_url(postgres_url)
    proxy = TcpProxy((target.host or "127.0.0.1", target.port or 5432))
    await proxy.start()
    workers.use_database(postgres_url, through=proxy.url(postgres_url))
    workers.migrate()
    workers.start(FULFILLMENT_DELAY="2")
    await workers.polling()
    loop = asyncio.get_running_loop()
    try:
        carrier = await place(client, ONE_PARCEL, prefix="pg-carrier")
        await reaches(carrier, OrderStatus.SHIPPED)
        shipped = await view(carrier)
        packing = await place(client, TWO_PARCELS, prefix="pg-packing")
        await eventually(lambda: activity_started(packing, "pick_and_pack", 2), bool)

        await proxy.stop()
        down_since = loop.time()
        during = await place(client, ONE_PARCEL, prefix="pg-during")
        await deliver(carrier, shipped)
        # The outage reached the orders: the parcels' booking failed and waits for a retry.
        await eventually(lambda: retrying(packing, "book_shipment"), bool, within=OUTAGE)
        await asyncio.sleep(OUTAGE - (loop.time() - down_since))  # the rest of the outage
        await proxy.start()

        orders = (carrier, packing, during)
        finals = await asyncio.gather(*(settle(handle) for handle in orders))
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n{workers.logs()}") from failed
    finally:
        await proxy.stop()

    for handle, final in zip(orders, finals, strict=True):
        await assert_settled(handle, final, postgres_url, parcels=len(final.shipments))
