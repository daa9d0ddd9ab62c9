"""The mail server down while orders move, then back.

It goes down once the first order's confirmation has arrived; a second order is placed while it
is down. Neither order waits for it: it comes back only once both have shipped with those
emails recorded and not sent (the first its "shipped", the second its confirmation and its
"shipped"). Every email then arrives, a second copy only ever as the same email.
"""

import asyncio

import pytest
from temporalio.client import Client

from tests.faults.conftest import (
    ONE_PARCEL,
    MailServer,
    Workers,
    assert_emailed,
    assert_settled,
    eventually,
    order_id,
    place,
    settle,
    unsent_emails,
)

pytestmark = pytest.mark.e2e


async def test_every_email_arrives_once_the_mail_server_is_back(
    client: Client, workers: Workers, mail_server: MailServer
) -> None:
    workers.migrate()
    workers.start(SMTP_HOST="127.0.0.1", SMTP_PORT=str(mail_server.port))
    await workers.polling()
    try:
        first = await place(client, ONE_PARCEL, prefix="smtp-first")

        async def arrived() -> list[str]:
            return [str(m["X-Ordermill-Kind"]) for m in mail_server.for_order(order_id(first))]

        await eventually(arrived, lambda kinds: "confirmation" in kinds)
        mail_server.stop()
        second = await place(client, ONE_PARCEL, prefix="smtp-second")

        async def unsent() -> tuple[list[str], list[str]]:
            return (
                await asyncio.to_thread(unsent_emails, workers.database_url, order_id(first)),
                await asyncio.to_thread(unsent_emails, workers.database_url, order_id(second)),
            )

        waiting = (["shipped"], ["confirmation", "shipped"])
        await eventually(unsent, lambda kinds: (sorted(kinds[0]), sorted(kinds[1])) == waiting)
        mail_server.start()

        finals = await asyncio.gather(settle(first), settle(second))
        # Each waits out its backoff (at most a minute) after the server is back.
        await eventually(unsent, lambda kinds: kinds == ([], []), within=90)
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n{workers.logs()}") from failed

    for handle, final in zip((first, second), finals, strict=True):
        await assert_settled(handle, final, workers.database_url, parcels=1)
        assert_emailed(mail_server, order_id(handle), ["confirmation", "shipped", "delivered"])
    assert await asyncio.to_thread(unsent_emails, workers.database_url, order_id(first)) == []
