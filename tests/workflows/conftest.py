"""An order under test: the real OrderWorkflow on the time-skipping server, fake activities.

Each test gets fresh fakes, a fresh task queue and a fresh order (workflow) id; whatever the
test leaves running is terminated so no timer of it fires during another test's skipped days.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.testing import WorkflowEnvironment

from models.holds import HoldDecision, HoldResolution, HoldView
from models.orders import (
    CancelRequest,
    OrderItem,
    OrderStatus,
    OrderTimeouts,
    OrderView,
    PaymentMethod,
    PlaceOrderInput,
)
from models.shipments import CarrierEvent, CarrierStatus
from models.wire import (
    SIGNAL_CARRIER_EVENT,
    UPDATE_CANCEL,
    UPDATE_RESOLVE_HOLD,
    order_workflow_id,
)
from tests.conftest import eventually, new_id
from tests.fakes import FakeOrderSystems, fake_worker
from workflows.order import OrderWorkflow

UPDATE_DEADLINE = 20.0  # seconds of real time


@dataclass
class OrderUnderTest:
    env: WorkflowEnvironment
    fakes: FakeOrderSystems
    task_queue: str
    order_id: str = field(default_factory=lambda: new_id("order"))
    _handle: WorkflowHandle[OrderWorkflow, OrderView] | None = None

    @property
    def handle(self) -> WorkflowHandle[OrderWorkflow, OrderView]:
        assert self._handle is not None, "start() the order first"
        return self._handle

    async def start(
        self,
        items: dict[str, int] | None = None,
        *,
        token: str = "tok_visa",
        customer_id: str = "cus_ada",
        timeouts: OrderTimeouts | None = None,
        task_timeout: timedelta | None = None,
    ) -> None:
        order = PlaceOrderInput(
            order_id=self.order_id,
            customer_id=customer_id,
            items=[
                OrderItem(sku=sku, quantity=quantity)
                for sku, quantity in (items or {"BOOK-DUNE": 1}).items()
            ],
            payment=PaymentMethod(token=token),
            placed_at=datetime.now(UTC),
            timeouts=timeouts or OrderTimeouts(),
        )
        self._handle = await self.env.client.start_workflow(
            OrderWorkflow.run,
            order,
            id=order_workflow_id(self.order_id),
            task_queue=self.task_queue,
            task_timeout=task_timeout,
        )

    async def view(self) -> OrderView:
        return await self.handle.query(OrderWorkflow.status)

    async def wait_for(self, status: OrderStatus, *, skip: timedelta | None = None) -> OrderView:
        """Poll the status query until `status`; with `skip`, jump that much time between polls
        (for retry backoffs, which the server only skips while a test waits on it)."""

        async def probe() -> OrderView:
            if skip is not None:
                await self.env.sleep(skip)
            return await self.view()

        return await eventually(probe, lambda view: view.status == status)

    async def cancel(self, reason: str = "customer_request") -> OrderView:
        """The cancel Update, by its wire name as the API sends it.

        Bounded by a deadline: an order that never reaches a final status would otherwise
        keep the update, and the test, waiting forever.
        """
        async with asyncio.timeout(UPDATE_DEADLINE):
            return await self.handle.execute_update(
                UPDATE_CANCEL, CancelRequest(reason=reason), result_type=OrderView
            )

    async def resolve(
        self, hold_id: str, resolution: HoldResolution, reason: str | None = None
    ) -> HoldView:
        """An operator's decision on a hold, by the Update's wire name as the API sends it;
        the decided hold, from the order the Update answers with."""
        async with asyncio.timeout(UPDATE_DEADLINE):
            decided = await self.handle.execute_update(
                UPDATE_RESOLVE_HOLD,
                HoldDecision(hold_id=hold_id, resolution=resolution, reason=reason),
                result_type=OrderView,
            )
        return next(h for h in decided.holds if h.hold_id == hold_id)

    async def hold(self, hold_id: str, *, skip: timedelta | None = None) -> OrderView:
        """Poll until the hold `hold_id` is open; with `skip`, jump time between polls (retry
        backoffs until an outage exhausts them)."""

        async def probe() -> OrderView:
            if skip is not None:
                await self.env.sleep(skip)
            return await self.view()

        def held(view: OrderView) -> bool:
            return any(h.hold_id == hold_id and h.resolution is None for h in view.holds)

        return await eventually(probe, held)

    async def result(self) -> OrderView:
        """The workflow's outcome; waiting for it lets the server skip timers (days) at once."""
        return await self.handle.result()

    async def carrier(
        self,
        status: CarrierStatus,
        event_id: str,
        *,
        occurred_at: datetime | None = None,
        tracking_number: str | None = None,
        parcel: str = "SHP-1",
    ) -> None:
        """A carrier event for the order's `parcel` (its fake tracking number), or for
        `tracking_number`."""
        await self.handle.signal(
            SIGNAL_CARRIER_EVENT,  # by name, as the API sends it
            CarrierEvent(
                event_id=event_id,
                tracking_number=tracking_number or f"TRK-{self.order_id}-{parcel}",
                status=status,
                occurred_at=occurred_at or datetime.now(UTC),
                description=f"carrier says {status.value}",
            ),
        )

    async def called(self, name: str, count: int = 1) -> None:
        """Wait until the fake `name` has been called `count` times (activities start async)."""

        async def probe() -> int:
            return len(self.fakes.called(name))

        await eventually(probe, lambda n: n >= count)


@pytest.fixture
async def order(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[OrderUnderTest]:
    fakes = FakeOrderSystems()
    async with fake_worker(time_skipping_env.client, fakes) as task_queue:
        under_test = OrderUnderTest(env=time_skipping_env, fakes=fakes, task_queue=task_queue)
        try:
            yield under_test
        finally:
            if under_test._handle is not None:
                # Let held fakes finish, so nothing is in flight when the order is terminated.
                fakes.hold_pick_pack = False
                fakes.held_warehouses.clear()
                fakes.capture_allowed.set()
                await _terminate_when_quiet(under_test._handle)


async def _terminate_when_quiet(handle: WorkflowHandle[OrderWorkflow, OrderView]) -> None:
    """Terminate what the test left running, once no activity of it is in flight.

    The time-skipping server stops skipping time for good if an order is terminated while one
    of its activities runs; every later test's skipped days would then be slept.
    """

    async def described() -> WorkflowExecutionDescription:
        return await handle.describe()

    description = await eventually(
        described,
        lambda d: (
            d.status is not WorkflowExecutionStatus.RUNNING
            or not d.raw_description.pending_activities
        ),
    )
    if description.status is WorkflowExecutionStatus.RUNNING:
        await handle.terminate("test finished")
