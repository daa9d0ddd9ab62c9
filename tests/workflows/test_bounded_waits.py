"""A test server that has stopped skipping time sleeps an order's skipped minutes for real; the
waits of OrderUnderTest fail then, in seconds and saying so, instead of stalling the suite."""

import time
from datetime import timedelta

import pytest
from temporalio.api.testservice.v1 import LockTimeSkippingRequest

import tests.workflows.conftest as under_test
from tests.conftest import start_time_skipping
from tests.fakes import FakeOrderSystems, fake_worker
from tests.workflows.conftest import OrderUnderTest


async def test_a_server_that_stopped_skipping_time_fails_the_wait_saying_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(under_test, "SKIP_DEADLINE", 2.0)
    env = await start_time_skipping()  # a server of its own: it is left unable to skip
    try:
        fakes = FakeOrderSystems()
        fakes.down.add("authorize_payment")
        async with fake_worker(env.client, fakes) as task_queue:
            order = OrderUnderTest(env=env, fakes=fakes, task_queue=task_queue)
            await order.start()
            # One lock too many: the server's clock now runs at the wall clock's pace.
            await env.client.test_service.lock_time_skipping(LockTimeSkippingRequest())
            started = time.monotonic()
            with pytest.raises(AssertionError) as failed:
                await order.hold("retries_exhausted", skip=timedelta(minutes=5))

        assert time.monotonic() - started < 10
        message = str(failed.value)
        assert "the test server did not skip 0:05:00 of time within 2.0s" in message, message
        assert f"order {order.order_id}: status " in message, message  # its last state
    finally:
        await env.shutdown()
