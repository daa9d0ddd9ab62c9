"""`kill -9` of the worker with five orders in flight, each at a different stage.

One kill catches them all, each parked at its stage by what the test observes:

- confirming: its confirmation recorded and in the mail server's DATA, the 250 not yet given
  (the mail server holds it): the worker dies between the send and marking it sent;
- packing: both parcels' pick/pack running on the worker (pending activities, started);
- shipping: its capture done, its "shipped" email held in DATA like the first one;
- with the carrier: shipped, the workflow idle; "delivered" arrives while no worker runs;
- in its return window: delivered, its timer running; it fires while no worker runs.

A new worker process carries every order to `completed`: one authorization and one capture per
parcel, pick/pack done again after its heartbeat timed out, the two interrupted emails sent
again under the same Message-ID (at least once, never a different email).
"""

import asyncio
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from models.orders import OrderStatus
from tests.faults.conftest import (
    ONE_PARCEL,
    TWO_PARCELS,
    MailServer,
    Workers,
    activity_started,
    assert_emailed,
    assert_settled,
    deliver,
    eventually,
    order_id,
    place,
    reaches,
    settle,
    status,
    view,
)

pytestmark = pytest.mark.e2e


async def test_a_killed_worker_loses_no_order_at_any_stage(
    client: Client, workers: Workers, mail_server: MailServer
) -> None:
    workers.migrate()
    # A short lease, so the new worker sends the dead one's interrupted emails again soon.
    mail = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail_server.port), "EMAIL_SEND_LEASE": "3"}
    workers.start(FULFILLMENT_DELAY="2", **mail)
    await workers.polling()
    try:
        returning = await place(
            client, ONE_PARCEL, prefix="crash-returning", return_window=timedelta(seconds=10)
        )
        carrier = await place(client, ONE_PARCEL, prefix="crash-carrier")
        shipping = await place(client, TWO_PARCELS, prefix="crash-shipping")
        confirming = await place(client, ONE_PARCEL, prefix="crash-confirming")
        held = {
            (order_id(confirming), "confirmation"),
            (order_id(shipping), "shipped"),
        }
        mail_server.hold(
            lambda m: (str(m["X-Ordermill-Order"]), str(m["X-Ordermill-Kind"])) in held
        )

        await reaches(returning, OrderStatus.SHIPPED)
        await deliver(returning, await view(returning))
        await reaches(returning, OrderStatus.DELIVERED)
        await reaches(carrier, OrderStatus.SHIPPED)
        with_carrier = await view(carrier)

        async def held_now() -> set[tuple[str, str]]:
            return {
                (str(m["X-Ordermill-Order"]), str(m["X-Ordermill-Kind"]))
                for m in mail_server.held()
            }

        await eventually(held_now, held.issubset)
        # Placed last, so its pick/pack is the one running when the worker dies.
        packing = await place(client, TWO_PARCELS, prefix="crash-packing")
        await eventually(lambda: activity_started(packing, "pick_and_pack", 2), bool)
        assert await status(returning) == OrderStatus.DELIVERED.value  # still in its window

        workers.kill()
        mail_server.release()  # the dead worker's sessions end; the mail server kept the two
        await deliver(carrier, with_carrier)  # no worker runs: the server keeps the signal
        workers.start(FULFILLMENT_DELAY="1", **mail)

        orders = (confirming, packing, shipping, carrier, returning)
        finals = await asyncio.gather(*(settle(handle) for handle in orders))
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n{workers.logs()}") from failed

    for handle, final in zip(orders, finals, strict=True):
        await assert_settled(handle, final, workers.database_url, parcels=len(final.shipments))
        assert_emailed(
            mail_server,
            order_id(handle),
            ["confirmation", *(["shipped"] * len(final.shipments)), "delivered"],
        )

    # The interrupted emails went out again, as the same email.
    copies = [m["X-Ordermill-Kind"] for m in mail_server.for_order(order_id(confirming))]
    assert copies.count("confirmation") == 2, copies
    # Pick/pack really was interrupted, and done again by the new worker.
    history = await packing.fetch_history()
    attempts = [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert max(attempts) >= 2, attempts
