"""An order under test: the real OrderWorkflow on the time-skipping server, fake activities.

Each test gets fresh fakes, a fresh task queue and a fresh order (workflow) id; whatever the
test leaves running is terminated so no timer of it fires during another test's skipped days.

Every wait of OrderUnderTest has a deadline in real seconds, and failing it names what was
awaited and the order's last state: on a starved machine, or a test server that has stopped
skipping time (it then sleeps skipped days and minutes for real), the test fails instead of
stalling the suite.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
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

T = TypeVar("T")

# Seconds of real time; each is many times what the wait takes on a quiet machine.
RPC_DEADLINE = 10.0  # a call the server answers at once: start, query, signal, describe
UPDATE_DEADLINE = 20.0  # an update: the order's worker must take it up and answer
SKIP_DEADLINE = 10.0  # the test server skipping minutes of an order's time
RESULT_DEADLINE = 60.0  # an order's end: its days of timers are skipped, not slept


def summary(view: OrderView) -> str:
    """The order's state in one line, for a failure's message."""
    holds = [h.hold_id for h in view.holds if h.resolution is None]
    events = [e.event for e in view.timeline[-4:]]
    return f"status {view.status.value}, open holds {holds}, last events {events}"


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
        self._handle = await self._within(
            RPC_DEADLINE,
            f"the start of order {self.order_id}",
            self.env.client.start_workflow(
                OrderWorkflow.run,
                order,
                id=order_workflow_id(self.order_id),
                task_queue=self.task_queue,
                task_timeout=task_timeout,
            ),
        )

    async def _within(
        self, seconds: float, what: str, awaitable: Awaitable[T], *, state: bool = True
    ) -> T:
        """`awaitable`, failed after `seconds` of real time naming `what` and (with `state`)
        the order's last state."""
        try:
            async with asyncio.timeout(seconds):
                return await awaitable
        except TimeoutError:
            last = await self._last_state() if state else "not asked"
            raise AssertionError(
                f"{what}: no answer within {seconds}s of real time; the order's last state: {last}"
            ) from None

    async def _last_state(self) -> str:
        if self._handle is None:
            return "not started"
        try:
            async with asyncio.timeout(2):
                return summary(await self._handle.query(OrderWorkflow.status))
        except TimeoutError:
            return "unknown: its status query went unanswered too"

    async def view(self) -> OrderView:
        return await self._within(
            RPC_DEADLINE,
            f"the status query of order {self.order_id}",
            self.handle.query(OrderWorkflow.status),
            state=False,
        )

    async def describe(self) -> WorkflowExecutionDescription:
        return await self._within(
            RPC_DEADLINE, f"describing order {self.order_id}", self.handle.describe()
        )

    async def history(self) -> WorkflowHistory:
        return await self._within(
            RPC_DEADLINE, f"the history of order {self.order_id}", self.handle.fetch_history()
        )

    async def _skip(self, skip: timedelta) -> None:
        """Jump `skip` of the order's time: a moment's work for a server that skips time,
        `skip` of real time for one that has stopped skipping, which this turns into a
        failure saying so."""
        try:
            async with asyncio.timeout(SKIP_DEADLINE):
                await self.env.sleep(skip)
        except TimeoutError:
            raise AssertionError(
                f"the test server did not skip {skip} of time within {SKIP_DEADLINE}s of real "
                f"time: it is starved, or has stopped skipping time (order {self.order_id}: "
                f"{await self._last_state()})"
            ) from None

    async def _poll(
        self, what: str, check: Callable[[OrderView], bool], skip: timedelta | None
    ) -> OrderView:
        async def probe() -> OrderView:
            if skip is not None:
                await self._skip(skip)
            return await self.view()

        if skip is not None:
            what = f"{what} (skipping {skip} between polls)"
        return await eventually(probe, check, what=what, show=summary)

    async def wait_for(self, status: OrderStatus, *, skip: timedelta | None = None) -> OrderView:
        """Poll the status query until `status`; with `skip`, jump that much time between polls
        (for retry backoffs, which the server only skips while a test waits on it)."""
        return await self._poll(
            f"order {self.order_id} to reach {status.value}",
            lambda view: view.status == status,
            skip,
        )

    async def update(self, name: str, arg: Any, result_type: type[T]) -> T:
        """An Update by its wire name, as the API sends it. Bounded: an order that never takes
        it up would otherwise keep the update, and the test, waiting forever."""
        return await self._within(
            UPDATE_DEADLINE,
            f"the {name} update of order {self.order_id}",
            self.handle.execute_update(name, arg, result_type=result_type),
        )

    async def signal(self, name: str, arg: Any) -> None:
        await self._within(
            RPC_DEADLINE,
            f"the {name} signal to order {self.order_id}",
            self.handle.signal(name, arg),
        )

    async def cancel(self, reason: str = "customer_request") -> OrderView:
        """The cancel Update."""
        return await self.update(UPDATE_CANCEL, CancelRequest(reason=reason), OrderView)

    async def resolve(
        self, hold_id: str, resolution: HoldResolution, reason: str | None = None
    ) -> HoldView:
        """An operator's decision on a hold; the decided hold, from the order the Update
        answers with."""
        decided = await self.update(
            UPDATE_RESOLVE_HOLD,
            HoldDecision(hold_id=hold_id, resolution=resolution, reason=reason),
            OrderView,
        )
        return next(h for h in decided.holds if h.hold_id == hold_id)

    async def hold(self, hold_id: str, *, skip: timedelta | None = None) -> OrderView:
        """Poll until the hold `hold_id` is open; with `skip`, jump time between polls (retry
        backoffs until an outage exhausts them)."""

        def held(view: OrderView) -> bool:
            return any(h.hold_id == hold_id and h.resolution is None for h in view.holds)

        return await self._poll(f"hold {hold_id} of order {self.order_id} to open", held, skip)

    async def result(self) -> OrderView:
        """The workflow's outcome; waiting for it lets the server skip timers (days) at once."""
        return await self._within(
            RESULT_DEADLINE, f"the end of order {self.order_id}", self.handle.result()
        )

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
        await self.signal(
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

        await eventually(probe, lambda n: n >= count, what=f"{count} call(s) of fake {name}")


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


def in_flight(description: WorkflowExecutionDescription) -> list[str]:
    return [a.activity_type.name for a in description.raw_description.pending_activities]


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
        what=f"{handle.id} to have no activity in flight, to be terminated",
        show=lambda d: f"{d.status.name if d.status else None}, in flight: {in_flight(d)}",
    )
    if description.status is WorkflowExecutionStatus.RUNNING:
        async with asyncio.timeout(RPC_DEADLINE):
            await handle.terminate("test finished")
