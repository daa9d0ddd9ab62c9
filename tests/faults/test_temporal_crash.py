"""`kill -9` of the Temporal dev server, started again on the same history file.

Two orders are in flight when the server dies: one with both parcels in pick/pack on the worker,
one shipped and waiting for its carrier. The same worker process (never restarted) and the
test's client reconnect on their own; every order, and one placed after the restart, ends
completed with one authorization and one capture per parcel.
"""

import asyncio

import pytest
from temporalio.client import Client

from models.orders import OrderStatus
from tests.faults.conftest import (
    ONE_PARCEL,
    TWO_PARCELS,
    DevServer,
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

pytestmark = pytest.mark.e2e


async def test_orders_survive_a_killed_dev_server(
    dev_server: DevServer, client: Client, workers: Workers
) -> None:
    workers.migrate()
    worker = workers.start(FULFILLMENT_DELAY="3")
    await workers.polling()
    try:
        waiting = await place(client, ONE_PARCEL, prefix="tmp-waiting")
        await reaches(waiting, OrderStatus.SHIPPED)
        shipped = await view(waiting)
        packing = await place(client, TWO_PARCELS, prefix="tmp-packing")
        await eventually(lambda: activity_started(packing, "pick_and_pack", 2), bool)

        dev_server.kill()
        dev_server.start()
        await dev_server.connect()  # it answers again

        await deliver(waiting, shipped)  # through the test's own client, reconnected
        later = await place(client, ONE_PARCEL, prefix="tmp-later")
        finals = await asyncio.gather(settle(waiting), settle(packing), settle(later))
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n{workers.logs()}") from failed

    for handle, final, parcels in zip((waiting, packing, later), finals, (1, 2, 1), strict=True):
        await assert_settled(handle, final, workers.database_url, parcels=parcels)
    assert worker.poll() is None, f"the worker exited:\n{workers.logs()}"
