"""A stateful property test of OrderWorkflow: random interleavings, and what must always hold.

Each example places one order of one or two parcels (BOOK-DUNE ships from WH-EAST,
BOOK-EARTHSEA from WH-WEST, sometimes with an e-book beside them) on the time-skipping server,
with fakes that fail at random: outages that pass, outages past an activity's retry bound,
declined captures, refused refunds, records the database refuses, SKUs sold out, warehouses
that hold pick/pack until the test lets go. It then plays a random sequence of carrier events
(duplicates, out of order, late, for unknown tracking numbers, malformed payloads sent as raw
dicts), cancels, returns and exchanges, goodwill refunds, questions, feedback, operators'
hold decisions and timer skips, letting the order come to rest after each step.

At rest, after every step:
- no workflow task failed and the workflow did not fail; an Update is refused only with an
  ApplicationError of the order's own (never a Python exception's name); resolve_hold answers
  with the order, the hold decided as asked; every hold id is one resolve_hold accepts;
- the workflow is closed, or it waits on a business timer (delivery deadline, return window,
  arrival deadline) or an open hold, and on nothing else: no workflow task, no retry backoff,
  no activity pending (but a pick/pack the test holds), no Update unanswered unless a hold is
  open, OrderHolds naming the open holds;
- the ledger, from the fakes: one authorization per order, captured <= authorized, at most one
  capture per parcel, refunded <= captured, and the view agrees with the processor;
- stock per warehouse: what was reserved is committed, released or still held, and only
  committed units are restocked;
- each email (kind, reference) is sent by one record only (a retried record may repeat it, with
  the same idempotency key, which never means two different emails);
- every parcel shows exactly the well-formed, first-seen events sent for its tracking number;
- nothing is booked or captured after an accepted cancel.

The seed is fixed (`derandomize`), so `make test` plays the same examples every time, and
Hypothesis prints the failing scenario step by step (its notes). Every wait is bounded: an order
that does not come to rest fails the example with what it still waits for, never a hang.

The examples run on a time-skipping server of their own, not the session's: a failing example
may leave what no teardown can undo (a workflow task that keeps failing, or an activity pending
when the order is terminated, stops that server skipping time for good), so after a failure the
server is replaced, and the other workflow tests never see it. Shrinking replays a failing
scenario hundreds of times, so it is off in `make test`; a longer search, shrinking what fails:

    ORDERMILL_PROPERTY_EXAMPLES=300 ORDERMILL_PROPERTY_SHRINK=1 .venv/bin/python -m pytest \\
        tests/workflows/test_order_properties.py

(about one second an example on a 2-core machine).
"""

import asyncio
import builtins
import os
import re
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import RetryPolicy
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from models.activities import OrderEmail, ShipmentDirection
from models.holds import HoldDecision, HoldResolution
from models.orders import (
    FINAL_STATUSES,
    AuthorizationStatus,
    CancelRequest,
    FeedbackRequest,
    GoodwillRefundRequest,
    InquiryRequest,
    OrderItem,
    OrderLimits,
    OrderView,
    PaymentMethod,
    PlaceOrderInput,
    ReturnLine,
    ReturnReason,
    ReturnRequest,
    ReturnResolution,
    ReturnStatus,
)
from models.shipments import CARRIER_FINAL, CarrierEvent, CarrierStatus, ShipmentView
from models.wire import (
    ORDER_HOLDS,
    SEARCH_ATTRIBUTES,
    SIGNAL_CARRIER_EVENT,
    UPDATE_ASK,
    UPDATE_CANCEL,
    UPDATE_FEEDBACK,
    UPDATE_REFUND,
    UPDATE_REQUEST_RETURN,
    UPDATE_RESOLVE_HOLD,
    order_workflow_id,
)
from tests.conftest import new_id, venv_binary
from tests.fakes import (
    DECLINED_TOKEN,
    FLAKY_TOKEN,
    Call,
    FakeOrderSystems,
    fake_catalog,
    fake_worker,
)
from workflows.order import OrderWorkflow

EXAMPLES = int(os.environ.get("ORDERMILL_PROPERTY_EXAMPLES", "40"))
SHRINK = bool(os.environ.get("ORDERMILL_PROPERTY_SHRINK"))

# Real seconds, each wait bounded so that a stuck order fails its example with a message.
CALL_DEADLINE = 15.0  # one call to the server: a query, a signal, a describe, a skip of days
UPDATE_DEADLINE = 20.0  # an Update accepted or refused
SETTLE_DEADLINE = 45.0  # an order at rest after a step (a local outage sleeps ~4 s for real)
TEARDOWN_DEADLINE = 15.0  # the same, to terminate the order after its example failed
ANSWER_DEADLINE = 5.0  # the answer of an Update the order has finished, reaching the client
EXAMPLE_DEADLINE = 180.0  # one whole example, its worker's shutdown included
# Timers shorter than this are retry backoffs (a local activity's), skipped while settling;
# longer ones are the order's own waits: delivery deadline, return window, arrival deadline,
# a hold's decision deadline, and the authorization's renewal while a hold is open.
BACKOFF_AT_MOST = timedelta(hours=1)
BUSINESS_TIMERS = ("deadline", "return window", "before it expires")
EVENTS_AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # carrier events' times: this, plus minutes

# Retry bounds (workflows/policies.py), so an outage drawn can pass or outlast its bound.
REMOTE_BOUNDS = {
    "authorize_payment": 15,
    "capture_payment": 15,
    "void_payment": 15,
    "refund_payment": 15,
    "book_shipment": 15,
    "pick_and_pack": 5,
}
LOCAL_BOUND = 12
HOLD_ID = re.compile(r"[a-z_]{1,40}(-[0-9]{1,4})?")  # what HoldDecision accepts
LOCAL_ACTIVITIES = (
    "verify_customer",
    "reserve_stock",
    "release_stock",
    "commit_stock",
    "restock",
    "revoke_downloads",
    "record_order",
)

T = TypeVar("T")


async def bounded(step: Awaitable[T], what: str, seconds: float = CALL_DEADLINE) -> T:
    """`step`, or a failure naming it if it takes longer than `seconds` of real time."""
    try:
        async with asyncio.timeout(seconds):
            return await step
    except TimeoutError:
        raise AssertionError(f"{what}: no answer within {seconds:.0f}s") from None


# ---- the scenario: steps as plain values, so Hypothesis prints and shrinks them ------------


@dataclass(frozen=True)
class Carrier:
    """A carrier event for `target` (SHP-1, RET-1, RET-1-exchange, unknown, ...)."""

    target: str
    status: CarrierStatus
    event: int  # event ids come from a small pool: the same id twice is a duplicate
    minute: int  # occurred_at, minutes after EVENTS_AT: out of order at random


@dataclass(frozen=True)
class Track:
    """A carrier event for one of the parcels the order has booked (outbound, return label,
    exchange), one still on its way if any is: the order's own parcels move on."""

    parcel: int  # which, modulo their number
    status: CarrierStatus
    event: int
    minute: int


@dataclass(frozen=True)
class Arrive:
    """The held warehouses pack, and every booked parcel still on its way arrives (one event
    each, at `minute`)."""

    minute: int


@dataclass(frozen=True)
class Malformed:
    target: str
    flaw: str


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class Return:
    line: int  # which of the order's lines, modulo their number
    quantity: int
    exchange: bool


@dataclass(frozen=True)
class Refund:
    amount: int


@dataclass(frozen=True)
class Ask:
    pass


@dataclass(frozen=True)
class Feedback:
    rating: int


@dataclass(frozen=True)
class Decide:
    """An operator's decision on one of the open holds (or on none: refused)."""

    pick: int
    release: bool


@dataclass(frozen=True)
class Skip:
    by: timedelta


@dataclass(frozen=True)
class Fail:
    """From now on: `capture_declines`, `refund_refusals`, `refuse_records` (the next `times`),
    `sold_out:<sku>`, or `outage:<activity>` for its next `times` attempts."""

    what: str
    times: int = 1


@dataclass(frozen=True)
class LetGo:
    """The held warehouses pack at last."""


Step = (
    Carrier
    | Track
    | Arrive
    | Malformed
    | Cancel
    | Return
    | Refund
    | Ask
    | Feedback
    | Decide
    | Skip
    | Fail
    | LetGo
)


@dataclass(frozen=True)
class Scenario:
    items: tuple[tuple[str, int], ...]
    token: str
    held: tuple[str, ...]  # warehouses whose pick/pack waits for a LetGo (or the end)
    failures: tuple[Fail, ...]  # in force when the order is placed
    steps: tuple[Step, ...]


TARGETS = ("SHP-1", "SHP-2", "RET-1", "RET-2", "RET-1-exchange", "unknown")
FLAWS = ("naive time", "unknown status", "no status", "empty id", "not an object", "NUL in id")


def failures(*, placing: bool = False) -> st.SearchStrategy[Fail]:
    """A failure; when `placing` the order, a sold-out SKU is rare (it only rejects it)."""
    remote = st.sampled_from(sorted(REMOTE_BOUNDS)).flatmap(
        lambda name: st.builds(
            Fail,
            st.just(f"outage:{name}"),
            st.sampled_from([1, 2, REMOTE_BOUNDS[name], REMOTE_BOUNDS[name] + 2]),
        )
    )
    # A local activity's first retries are slept in real time: mostly short outages.
    local = st.builds(
        Fail,
        st.sampled_from([f"outage:{name}" for name in LOCAL_ACTIVITIES]),
        st.sampled_from([1, 1, 1, LOCAL_BOUND]),
    )
    business = st.builds(
        Fail,
        st.sampled_from(["capture_declines", "refund_refusals", "refuse_records"]),
        st.integers(1, 2),
    )
    sold_out = st.builds(
        Fail, st.sampled_from(["sold_out:BOOK-DUNE", "sold_out:BOOK-EARTHSEA"]), st.just(1)
    )
    if placing:
        return st.one_of(business, remote, local, business, remote, local, sold_out)
    return st.one_of(business, remote, local, sold_out)


def steps(*, after_delivery: bool) -> st.SearchStrategy[Step]:
    """Steps, the ones that move an order on drawn more often than the others."""
    any_event = st.builds(
        Carrier,
        st.sampled_from(TARGETS),
        st.sampled_from(CarrierStatus),
        st.integers(0, 5),
        st.integers(0, 600),
    )
    last_word = st.builds(
        Track,
        st.integers(0, 3),
        st.sampled_from(
            [CarrierStatus.DELIVERED] * 4
            + [CarrierStatus.IN_TRANSIT, CarrierStatus.RETURN_TO_SENDER, CarrierStatus.FAILURE]
        ),
        st.integers(0, 5),
        st.integers(0, 600),
    )
    returns = st.builds(Return, st.integers(0, 2), st.sampled_from([1, 1, 2]), st.booleans())
    decisions = st.builds(Decide, st.integers(0, 3), st.booleans())
    skips = st.builds(
        Skip,
        st.sampled_from(
            [timedelta(hours=1), timedelta(days=2), timedelta(days=15), timedelta(days=31)]
        ),
    )
    arrive = st.builds(Arrive, st.integers(0, 600))
    cancel = st.just(Cancel())
    refunds = st.builds(Refund, st.sampled_from([1, 250, 1899, 5000]))
    anything = [
        any_event,
        last_word,
        st.builds(Malformed, st.sampled_from(TARGETS[:3]), st.sampled_from(FLAWS)),
        arrive,
        returns,
        decisions,
        skips,
        failures(),
        cancel,
        refunds,
        st.just(Ask()),
        st.builds(Feedback, st.integers(1, 5)),
        st.just(LetGo()),
    ]
    if not after_delivery:
        # A cancel while stock and money are held (a warehouse packs, an operator decides).
        return st.one_of(last_word, decisions, decisions, cancel, cancel, *anything)
    # Customer service on what arrived, refunds on top of returns, the labels coming back.
    return st.one_of(returns, last_word, returns, arrive, decisions, refunds, *anything)


# The end of an order's life, mostly played out: the warehouses pack, an operator releases
# what is held, what is on its way arrives (or not), and the clock runs past the delivery
# deadline, the return window and a return's arrival deadline, so the order closes (or shows
# what keeps it open) and what a closed order must have given back is checked too.
def closing(*, arriving: bool) -> tuple[Step, ...]:
    return (
        LetGo(),
        *[Decide(pick=0, release=True)] * 3,
        *([Arrive(minute=600)] * 2 if arriving else []),
        *[Skip(timedelta(days=31))] * 2,
    )


def scenarios() -> st.SearchStrategy[Scenario]:
    books = st.sampled_from(
        [
            (("BOOK-DUNE", 1),),
            (("BOOK-EARTHSEA", 2),),
            (("BOOK-DUNE", 2), ("BOOK-EARTHSEA", 1)),
            (("BOOK-DUNE", 1), ("BOOK-EARTHSEA", 1)),
        ]
    )
    items = st.tuples(books, st.booleans()).map(
        lambda drawn: drawn[0] + ((("EBOOK-DUNE", 1),) if drawn[1] else ())
    )
    return st.builds(
        Scenario,
        items=items,
        token=st.sampled_from(["tok_visa", "tok_visa", "tok_visa", FLAKY_TOKEN, DECLINED_TOKEN]),
        held=st.sampled_from([(), (), ("WH-EAST",), ("WH-WEST",), ("WH-EAST", "WH-WEST")]),
        failures=st.lists(failures(placing=True), max_size=2).map(tuple),
        # Anything may come at any time, but most orders should live to see customer service:
        # steps, then (mostly) every parcel arrives, then steps weighted to returns, then
        # (mostly) the clock runs out.
        steps=st.tuples(
            st.lists(steps(after_delivery=False), max_size=8),
            st.lists(st.builds(Arrive, st.integers(0, 600)), min_size=0, max_size=1),
            st.lists(steps(after_delivery=True), min_size=2, max_size=12),
            # The first, Hypothesis's favourite.
            st.sampled_from([closing(arriving=True), closing(arriving=False), ()]),
        ).map(lambda parts: (*parts[0], *parts[1], *parts[2], *parts[3])),
    )


# ---- driving one order ---------------------------------------------------------------------


@dataclass
class Sent:
    """An Update accepted by the order, and its answer once it comes."""

    name: str
    request: Any
    answer: "asyncio.Task[Any]"


@dataclass
class Run:
    env: WorkflowEnvironment
    fakes: FakeOrderSystems
    task_queue: str
    scenario: Scenario
    order_id: str = field(default_factory=lambda: new_id("prop"))
    handle: WorkflowHandle[OrderWorkflow, OrderView] | None = None
    updates: list[Sent] = field(default_factory=list)
    # Carrier events the order must keep: (tracking number, event id) -> the event, first wins.
    events: dict[tuple[str, str], CarrierEvent] = field(default_factory=dict)
    cancelled_after: int | None = None  # len(fakes.calls) when an accepted cancel was sent

    @property
    def wf(self) -> WorkflowHandle[OrderWorkflow, OrderView]:
        assert self.handle is not None
        return self.handle

    def tracking(self, target: str) -> str:
        if target.startswith("RET-") and not target.endswith("exchange"):
            return f"RTN-{self.order_id}-{target}"
        if target == "unknown":
            return f"TRK-{self.order_id}-SHP-9"
        return f"TRK-{self.order_id}-{target}"

    async def start(self) -> None:
        for failure in self.scenario.failures:
            self.fail(failure)
        self.fakes.held_warehouses.update(self.scenario.held)
        order = PlaceOrderInput(
            order_id=self.order_id,
            customer_id="cus_ada",
            items=[OrderItem(sku=sku, quantity=n) for sku, n in self.scenario.items],
            payment=PaymentMethod(token=self.scenario.token),
            placed_at=datetime.now(UTC),
            limits=OrderLimits(max_inquiries=3),  # the cap within reach of a short scenario
        )
        self.handle = await bounded(
            self.env.client.start_workflow(
                OrderWorkflow.run,
                order,
                id=order_workflow_id(self.order_id),
                task_queue=self.task_queue,
            ),
            "starting the order",
        )

    async def view(self) -> OrderView:
        return await bounded(self.wf.query(OrderWorkflow.status), "the status query")

    async def describe(self) -> WorkflowExecutionDescription:
        return await bounded(self.wf.describe(), "describing the order")

    async def history(self) -> list[HistoryEvent]:
        return list((await bounded(self.wf.fetch_history(), "fetching its history")).events)

    async def skip(self, by: timedelta) -> None:
        """Jump the server's clock; days take a moment while it skips, forever if it cannot."""
        await bounded(self.env.sleep(by), f"skipping {by} (is time skipping stuck?)")

    # ---- steps -------------------------------------------------------------------------------

    def fail(self, failure: Fail) -> None:
        fakes = self.fakes
        kind, _, name = failure.what.partition(":")
        if kind == "capture_declines":
            fakes.capture_declines += failure.times
        elif kind == "refund_refusals":
            fakes.refund_refusals += failure.times
        elif kind == "refuse_records":
            fakes.refuse_records += failure.times
        elif kind == "sold_out":
            fakes.sold_out.add(name)
        else:
            assert kind == "outage", failure
            fakes.outages[name] = fakes.outages.get(name, 0) + failure.times

    async def play(self, step: Step) -> str:
        """Take one step; what came of it, for the notes Hypothesis prints on a failure."""
        if isinstance(step, Carrier):
            return await self.signal(
                CarrierEvent(
                    event_id=f"evt-{step.event}",
                    tracking_number=self.tracking(step.target),
                    status=step.status,
                    occurred_at=EVENTS_AT + timedelta(minutes=step.minute),
                    description=f"carrier says {step.status.value}",
                )
            )
        if isinstance(step, Track):
            view = await self.view()
            booked = [s for s in booked_parcels(view) if s.tracking_number]
            if not booked:
                return "nothing booked yet"
            moving = [s for s in booked if s.status not in CARRIER_FINAL] or booked
            parcel = moving[step.parcel % len(moving)]
            assert parcel.tracking_number is not None
            return await self.signal(
                CarrierEvent(
                    event_id=f"evt-{step.event}",
                    tracking_number=parcel.tracking_number,
                    status=step.status,
                    occurred_at=EVENTS_AT + timedelta(minutes=step.minute),
                    description=f"carrier says {step.status.value}",
                )
            )
        if isinstance(step, Arrive):
            if self.fakes.held_warehouses:  # what arrives was packed first
                self.fakes.held_warehouses.clear()
                await self.settle()
            view = await self.view()
            arriving = [
                s.tracking_number
                for s in booked_parcels(view)
                if s.tracking_number and s.status not in CARRIER_FINAL
            ]
            for n, tracking in enumerate(arriving):
                await self.signal(
                    CarrierEvent(
                        event_id=f"evt-arrived-{n}",
                        tracking_number=tracking,
                        status=CarrierStatus.DELIVERED,
                        occurred_at=EVENTS_AT + timedelta(minutes=step.minute),
                    )
                )
            return f"{len(arriving)} parcel(s) delivered"
        if isinstance(step, Malformed):
            raw = malformed(self.tracking(step.target), step)
            await bounded(self.wf.signal(SIGNAL_CARRIER_EVENT, raw), "a malformed carrier event")
            return "signalled"
        if isinstance(step, Cancel):
            before = len(self.fakes.calls)
            outcome = await self.update(UPDATE_CANCEL, CancelRequest(reason="changed my mind"))
            if outcome == "accepted" and self.cancelled_after is None:
                self.cancelled_after = before
            return outcome
        if isinstance(step, Return):
            lines = [sku for sku, _ in self.scenario.items]
            request = ReturnRequest(
                lines=[ReturnLine(sku=lines[step.line % len(lines)], quantity=step.quantity)],
                reason=ReturnReason.DAMAGED,
                resolution=ReturnResolution.EXCHANGE if step.exchange else ReturnResolution.REFUND,
            )
            return await self.update(UPDATE_REQUEST_RETURN, request)
        if isinstance(step, Refund):
            refund = GoodwillRefundRequest(amount=step.amount, reason="sorry for the wait")
            return await self.update(UPDATE_REFUND, refund)
        if isinstance(step, Ask):
            return await self.update(UPDATE_ASK, InquiryRequest(message="where is my parcel?"))
        if isinstance(step, Feedback):
            return await self.update(UPDATE_FEEDBACK, FeedbackRequest(rating=step.rating))
        if isinstance(step, Decide):
            return await self.decide(step)
        if isinstance(step, Skip):
            if self.in_flight()[0]:
                return "not skipped: a warehouse is packing"  # its heartbeats would time out
            await self.skip(step.by)
            return "skipped"
        if isinstance(step, Fail):
            self.fail(step)
            return "failing"
        assert isinstance(step, LetGo)
        self.fakes.held_warehouses.clear()
        return "let go"

    async def signal(self, event: CarrierEvent) -> str:
        self.events.setdefault((event.tracking_number, event.event_id), event)
        await bounded(self.wf.signal(SIGNAL_CARRIER_EVENT, event), "a carrier event")
        return f"{event.status.value} for {event.tracking_number.removeprefix('TRK-')}"

    async def decide(self, step: Decide) -> str:
        holds = (await self.view()).holds
        open_holds = [h for h in holds if h.resolution is None]
        if open_holds:
            hold_id = open_holds[step.pick % len(open_holds)].hold_id
        elif holds:
            hold_id = holds[step.pick % len(holds)].hold_id  # already decided: refused
        else:
            hold_id = "no_such_hold"
        decision = HoldDecision(
            hold_id=hold_id,
            resolution=HoldResolution.RELEASED if step.release else HoldResolution.REJECTED,
            reason=None if step.release else "the operator gives it up",
        )
        return f"{hold_id}: " + await self.update(UPDATE_RESOLVE_HOLD, decision)

    async def update(self, name: str, request: Any) -> str:
        """Send an Update; 'accepted' (its answer is collected later) or why it was refused."""
        # resolve_hold answers with the whole order; the others' answers are only collected.
        answers_with = OrderView if name == UPDATE_RESOLVE_HOLD else object
        handle = await bounded(
            self.wf.start_update(
                name, request, wait_for_stage=WorkflowUpdateStage.ACCEPTED, result_type=answers_with
            ),
            f"the {name} Update",
            UPDATE_DEADLINE,
        )
        answer = asyncio.create_task(handle.result())
        # A refusal comes with the start's reply, so its answer is there at once.
        await asyncio.wait({answer}, timeout=0.01)
        if answer.done() and isinstance(answer.exception(), WorkflowUpdateFailedError):
            failed = answer.exception()
            assert isinstance(failed, WorkflowUpdateFailedError)
            return f"refused: {refusal(name, failed)}"
        self.updates.append(Sent(name, request, answer))
        return "accepted"

    # ---- coming to rest ----------------------------------------------------------------------

    def in_flight(self) -> tuple[list[Call], list[Call]]:
        """The fakes' attempts still running: those the test holds (pick/pack at a held
        warehouse) and the others."""
        running = [c for c in self.fakes.calls if not c.done]
        held = [
            c
            for c in running
            if c.name == "pick_and_pack" and c.arg.warehouse in self.fakes.held_warehouses
        ]
        return held, [c for c in running if c not in held]

    async def settle(self, deadline: float = SETTLE_DEADLINE) -> WorkflowExecutionDescription:
        """Wait until the order does nothing more by itself, skipping retry backoffs.

        At rest: closed, or no workflow task pending, no activity pending but the pick/packs
        the test holds, no retry-backoff timer, and the history unchanged over two looks. (The
        time-skipping server shows every pending activity as started, so what runs is read
        from the fakes' unfinished attempts, and the rest is waiting out a backoff.)
        """
        try:
            async with asyncio.timeout(deadline):
                return await self._settle()
        except TimeoutError:
            raise AssertionError(
                f"the order did not come to rest within {deadline:.0f}s: {await self.why()}"
            ) from None

    async def _settle(self) -> WorkflowExecutionDescription:
        last: tuple[int, int] | None = None
        while True:
            described = await self.describe()
            if described.status is not WorkflowExecutionStatus.RUNNING:
                return described
            raw = described.raw_description
            events = await self.history()
            # The server retries a failed task for ever: no rest to wait for.
            failed = failed_workflow_task(events)
            assert failed is None, failed
            held, running = self.in_flight()
            if workflow_task_pending(events) or running:
                last = None
                await asyncio.sleep(0.02)
                continue
            waiting = pending_beyond_held(raw.pending_activities, events, len(held))
            retrying = [(a, policy) for a, policy in waiting if a.attempt > 1]
            backoff = [t for t in open_timers(events) if not is_business_timer(t)]
            if retrying or backoff:
                # Skipping time while a warehouse packs would time its heartbeats out.
                if held:
                    self.let_go_of_warehouses()
                    continue
                now = await bounded(self.env.get_current_time(), "the server's clock")
                waits = [timer_fires_at(t) - now for t in backoff] + [
                    backoff_before(a.attempt, policy) for a, policy in retrying
                ]
                await self.skip(max(min(waits), timedelta(0)) + timedelta(seconds=1))
                last = None
                continue
            if waiting:
                last = None  # scheduled for a first attempt: a worker is about to take it
                await asyncio.sleep(0.02)
                continue
            seen = (len(events), len(self.fakes.calls))
            if seen == last:
                return described
            last = seen
            await asyncio.sleep(0.05)

    def let_go_of_warehouses(self) -> None:
        self.fakes.held_warehouses.clear()
        note("the held warehouses were let go, to skip a retry's backoff")

    async def why(self) -> str:
        """What the order still waits for, for a failure's message."""
        try:
            described = await self.describe()
            events = await self.history()
        except AssertionError as err:
            return f"the server does not answer ({err})"
        pending = described.raw_description.pending_activities
        scheduled = {
            e.activity_task_scheduled_event_attributes.activity_id: (
                e.activity_task_scheduled_event_attributes.activity_type.name
            )
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        }
        return (
            f"{described.status.name if described.status else '?'}, workflow task pending "
            f"{workflow_task_pending(events)}, activities "
            f"{[(scheduled.get(a.activity_id, '?'), a.attempt) for a in pending]}, timers "
            f"{[timer_summary(t) or 'backoff' for t in open_timers(events)]}, fakes running "
            f"{[c.name for c in self.fakes.calls if not c.done]}, "
            f"last calls {[c.name for c in self.fakes.calls[-5:]]}"
        )

    async def answered(self, *, wait: float = 0.0) -> None:
        """Collect the answers that came (waiting up to `wait` for the rest); an Update may
        only fail with a refusal, and resolve_hold answers with the order, the hold decided."""
        pending = [s.answer for s in self.updates if not s.answer.done()]
        if pending and wait > 0:
            await asyncio.wait(pending, timeout=wait)
        await asyncio.sleep(0)
        for sent in [s for s in self.updates if s.answer.done()]:
            self.updates.remove(sent)
            failure = sent.answer.exception()
            if failure is not None:
                assert isinstance(failure, WorkflowUpdateFailedError), (sent.name, repr(failure))
                note(f"{sent.name} answered: refused: {refusal(sent.name, failure)}")
            elif sent.name == UPDATE_RESOLVE_HOLD:
                decision: HoldDecision = sent.request
                answer = sent.answer.result()
                assert isinstance(answer, OrderView), answer
                decided = [h for h in answer.holds if h.hold_id == decision.hold_id]
                assert [h.resolution for h in decided] == [decision.resolution], (
                    f"resolve_hold {decision} answered with {decided}"
                )

    async def stop(self, *, failed: bool = False) -> bool:
        """Leave nothing running, as tests/workflows/conftest.py does: let every fake finish,
        wait until no activity is pending, then terminate. False if the order could not be
        made quiet (the server may then no longer skip time); after a `failed` example, only
        briefly tried."""
        for sent in self.updates:
            sent.answer.cancel()
        await asyncio.gather(*(s.answer for s in self.updates), return_exceptions=True)
        self.updates.clear()
        if self.handle is None:
            return True
        self.fakes.held_warehouses.clear()
        self.fakes.hold_pick_pack = False
        self.fakes.capture_allowed.set()
        quiet = True
        try:
            described = await self.settle(TEARDOWN_DEADLINE if failed else SETTLE_DEADLINE)
        except AssertionError as err:
            note(f"teardown: {err}")
            quiet = False
            described = await self.describe()
        if described.status is WorkflowExecutionStatus.RUNNING:
            await bounded(self.wf.terminate("property example finished"), "terminating")
        return quiet


def malformed(tracking: str, step: Malformed) -> Any:
    """A carrier event the API should never have let through, as the raw JSON it would be."""
    event: dict[str, Any] = {
        "event_id": "evt-malformed",
        "tracking_number": tracking,
        "status": CarrierStatus.DELIVERED.value,
        "occurred_at": EVENTS_AT.isoformat(),
    }
    if step.flaw == "naive time":
        event["occurred_at"] = "2026-11-26T10:00:00"
    elif step.flaw == "unknown status":
        event["status"] = "teleported"
    elif step.flaw == "no status":
        del event["status"]
    elif step.flaw == "empty id":
        event["event_id"] = ""
    elif step.flaw == "NUL in id":
        event["event_id"] = "evt-\x00"
    else:
        assert step.flaw == "not an object"
        return "delivered"
    return event


def refusal(name: str, failed: WorkflowUpdateFailedError) -> str:
    """The refusal's type; a refusal is an ApplicationError the order raised on purpose."""
    cause = failed.cause
    assert isinstance(cause, ApplicationError), f"{name} failed with {cause!r}"
    assert cause.type and not hasattr(builtins, cause.type), (
        f"{name} failed with a Python exception, not a refusal: {cause.type}: {cause.message}"
    )
    return f"{cause.type}: {cause.message}"


# ---- reading the history -------------------------------------------------------------------


WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED: True,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED: True,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: False,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: False,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: False,
}


def workflow_task_pending(events: Sequence[HistoryEvent]) -> bool:
    """Whether a workflow task is scheduled or running (a local activity runs inside one).

    Read from the history: the time-skipping server leaves it out of describe().
    """
    for event in reversed(events):
        pending = WORKFLOW_TASK_EVENTS.get(event.event_type)
        if pending is not None:
            return pending
    return True  # not even the first task has been scheduled yet


def failed_workflow_task(events: Sequence[HistoryEvent]) -> str | None:
    """The first workflow task failure in the history, with where it was raised."""
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failure = event.workflow_task_failed_event_attributes.failure
            where = [line.strip() for line in failure.stack_trace.splitlines() if line.strip()]
            return (
                f"a workflow task failed (event {event.event_id}): "
                f"{failure.application_failure_info.type or 'failure'}: {failure.message}"
                + (f" at {' / '.join(where[-4:])}" if where else "")
            )
    return None


def open_timers(events: Sequence[HistoryEvent]) -> list[HistoryEvent]:
    started: dict[str, HistoryEvent] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            started[event.timer_started_event_attributes.timer_id] = event
        elif event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            started.pop(event.timer_fired_event_attributes.timer_id, None)
        elif event.event_type == EventType.EVENT_TYPE_TIMER_CANCELED:
            started.pop(event.timer_canceled_event_attributes.timer_id, None)
    return list(started.values())


def pending_beyond_held(
    pending: Sequence[PendingActivityInfo], events: Sequence[HistoryEvent], held: int
) -> list[tuple[PendingActivityInfo, RetryPolicy]]:
    """The pending activities but `held` pick/packs, each with its retry policy (from its
    scheduling event: the test server leaves the pending activity's type out)."""
    scheduled = {
        e.activity_task_scheduled_event_attributes.activity_id: (
            e.activity_task_scheduled_event_attributes
        )
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    waiting = []
    for activity in sorted(pending, key=lambda a: a.attempt):
        attributes = scheduled[activity.activity_id]
        if held and attributes.activity_type.name == "pick_and_pack":
            held -= 1
            continue
        waiting.append((activity, attributes.retry_policy))
    return waiting


def backoff_before(attempt: int, policy: RetryPolicy) -> timedelta:
    """How long the server waits before `attempt` (2 and on)."""
    initial = policy.initial_interval.ToTimedelta()
    wait = initial * (policy.backoff_coefficient or 2.0) ** (attempt - 2)
    ceiling = policy.maximum_interval.ToTimedelta() if policy.HasField("maximum_interval") else None
    return min(wait, ceiling) if ceiling else wait


def timer_summary(timer: HistoryEvent) -> str:
    if not timer.user_metadata.HasField("summary"):
        return ""
    return timer.user_metadata.summary.data.decode(errors="replace")


def is_business_timer(timer: HistoryEvent) -> bool:
    timeout = timer.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
    return timeout > BACKOFF_AT_MOST


def timer_fires_at(timer: HistoryEvent) -> datetime:
    timeout = timer.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
    return timer.event_time.ToDatetime(tzinfo=UTC) + timeout


# ---- what must hold at rest ----------------------------------------------------------------


async def check_at_rest(run: Run, described: WorkflowExecutionDescription) -> OrderView:
    history = await run.history()
    failed = failed_workflow_task(history)
    assert failed is None, failed
    assert described.status in (
        WorkflowExecutionStatus.RUNNING,
        WorkflowExecutionStatus.COMPLETED,
    ), f"the workflow ended {described.status}"

    view = await run.view()
    open_holds = [h for h in view.holds if h.resolution is None]
    bad_ids = [h.hold_id for h in view.holds if not HOLD_ID.fullmatch(h.hold_id)]
    assert not bad_ids, f"holds no operator can name in resolve_hold: {bad_ids}"
    held, running = run.in_flight()
    packing = bool(held)
    closed = described.status is WorkflowExecutionStatus.COMPLETED
    # With nothing left to wait for, every answer is on its way: give it a moment to arrive.
    await run.answered(wait=ANSWER_DEADLINE if closed or not (open_holds or packing) else 0)
    if closed:
        assert view.status in FINAL_STATUSES, f"completed in {view.status}"
        assert not open_holds, f"completed with holds open: {open_holds}"
        assert not run.updates, f"updates never answered: {[s.name for s in run.updates]}"
    else:
        assert not workflow_task_pending(history), "a workflow task is still pending"
        timers = open_timers(history)
        waits_on = [timer_summary(t) for t in timers if is_business_timer(t)]
        assert len(waits_on) == len(timers), (
            f"short timers left (retry backoffs): {[timer_summary(t) for t in timers]}"
        )
        assert all(any(w in s for w in BUSINESS_TIMERS) for s in waits_on), (
            f"timers that are none of the order's own waits: {waits_on}"
        )
        pending = described.raw_description.pending_activities
        waiting = pending_beyond_held(pending, history, len(held))
        assert not running and not waiting, (
            f"activities left: {[c.name for c in running]}, {len(waiting)} waiting"
        )
        assert waits_on or open_holds or packing, (
            f"stuck in {view.status}: no timer, no hold, nothing in flight"
        )
        assert open_holds or packing or not run.updates, (
            f"updates unanswered with no hold open: {[s.name for s in run.updates]}"
        )
        shown = described.typed_search_attributes.get(ORDER_HOLDS) or []
        assert sorted(shown) == sorted({h.code.value for h in open_holds}), (shown, open_holds)

    check_ledger(run, view)
    check_stock(run, view)
    check_emails(run)
    check_carrier_events(run, view)
    check_nothing_left_after_cancel(run)
    if closed:
        check_closed_order_holds_nothing(run, view)
    return view


def unique(calls: list[Any]) -> list[Any]:
    """One per idempotency key: a retried call that succeeded twice counts once."""
    seen: dict[str, Any] = {}
    for call in calls:
        seen.setdefault(call.arg.idempotency_key, call)
    return list(seen.values())


def check_ledger(run: Run, view: OrderView) -> None:
    fakes = run.fakes
    authorizations = {
        c.result.authorization_id: c.result.amount
        for c in unique(fakes.succeeded("authorize_payment"))
    }
    # A renewal replaces the authorization while the order waits: the order knows every one
    # the processor gave, and each it replaced is voided, lapsed, or its void is on hold.
    shown = view.payment.authorizations
    assert sorted(a.authorization_id for a in shown) == sorted(authorizations), (
        shown,
        authorizations,
    )
    voided = {f"auth-{c.arg.authorize_key}" for c in fakes.succeeded("void_payment")}
    voiding = any(h.resolution is None and h.detail.startswith("Void ") for h in view.holds)
    for replaced in shown[:-1]:
        assert (
            replaced.authorization_id in voided
            or replaced.status is AuthorizationStatus.EXPIRED
            or voiding
        ), f"{replaced.authorization_id} was replaced but is still live"
    live = [a for a in shown if a.status is AuthorizationStatus.LIVE]
    assert len(live) <= 1, f"live authorizations: {live}"
    captures = unique(fakes.succeeded("capture_payment"))
    refunds = unique(fakes.succeeded("refund_payment"))
    for authorization, amount in authorizations.items():
        taken = sum(c.result.amount for c in captures if c.arg.authorization_id == authorization)
        assert taken <= amount, f"captured {taken} of an authorization of {amount}"
    per_parcel = Counter(c.arg.shipment_id for c in captures)
    assert all(n == 1 for n in per_parcel.values()), f"captures per parcel: {per_parcel}"
    captured = sum(c.result.amount for c in captures)
    refunded = sum(c.result.amount for c in refunds)
    assert refunded <= captured, f"refunded {refunded} of {captured} captured"
    assert all(c.arg.authorization_id in authorizations for c in captures + refunds)

    payment = view.payment
    outside = sum(r.amount for r in view.refunds if r.settled_outside)
    assert payment.captured == captured, (payment, captured)
    assert payment.refunded == refunded + outside, (payment, refunded, outside)
    assert payment.refunded <= payment.captured, payment
    assert payment.captured + payment.released <= payment.authorized, payment


def check_stock(run: Run, view: OrderView) -> None:
    fakes = run.fakes
    start = {
        (warehouse, sku): units
        for sku, product in fake_catalog().items()
        for warehouse, units in product.stock.items()
    }
    held: Counter[tuple[str, str]] = Counter()
    for order_units in fakes.held.values():
        held.update(order_units)
    keys = set(start) | set(held) | set(fakes.committed) | set(fakes.restocked)
    for key in keys:
        warehouse, sku = key
        free = fakes.catalog[sku].stock.get(warehouse, 0)
        accounted = free + held[key] + fakes.committed.get(key, 0) - fakes.restocked.get(key, 0)
        assert accounted == start.get(key, 0), (
            f"{sku} at {warehouse}: {free} free, {held[key]} held, "
            f"{fakes.committed.get(key, 0)} committed, {fakes.restocked.get(key, 0)} restocked, "
            f"started with {start.get(key, 0)}"
        )
        assert free >= 0 and held[key] >= 0, key
    # A commit an operator gave up leaves its units held: a restock may then exceed commits.
    gave_up_commit = any(
        h.resolution is HoldResolution.REJECTED and h.detail.startswith("Commit ")
        for h in view.holds
    )
    if not gave_up_commit:
        for key, units in fakes.restocked.items():
            assert units <= fakes.committed.get(key, 0), (
                f"restocked {units} of {key} but committed {fakes.committed.get(key, 0)}"
            )


def check_emails(run: Run) -> None:
    """Every email key is one email, recorded by one record (retries of it aside)."""
    by_key: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    records: dict[str, set[int]] = defaultdict(set)
    for call in run.fakes.succeeded("record_order"):
        email: OrderEmail | None = call.arg.email
        if email is None:
            continue
        by_key[email.idempotency_key].add((email.kind, email.reference, email.to))
        records[email.idempotency_key].add(call.arg.version)
    for key, meanings in by_key.items():
        assert len(meanings) == 1, f"{key} means {meanings}"
        assert len(records[key]) == 1, f"{key} was sent by records {sorted(records[key])}"
    kinds = Counter(
        (kind, reference) for meanings in by_key.values() for kind, reference, _ in meanings
    )
    assert all(n == 1 for n in kinds.values()), f"one email sent under two keys: {kinds}"


def booked_parcels(view: OrderView) -> list[ShipmentView]:
    """The order's parcels that carry events: outbound ones, return labels (by their tracking
    number only: the view keeps no label parcel), exchanges."""
    labels = [
        ShipmentView(
            shipment_id=f"{r.return_id}-label",
            tracking_number=r.tracking_number,
            # Still coming back, or (as far as picking a parcel goes) done.
            status=None if r.status is ReturnStatus.AWAITING_PARCEL else CarrierStatus.DELIVERED,
        )
        for r in view.returns
        if r.tracking_number is not None
    ]
    exchanges = [r.exchange_shipment for r in view.returns if r.exchange_shipment is not None]
    return list(view.shipments) + labels + exchanges


def check_carrier_events(run: Run, view: OrderView) -> None:
    """A parcel holds exactly the well-formed events sent for it, the first of each id,
    in time order; its status is the furthest they reached, the first to get there."""
    parcels = list(view.shipments) + [
        r.exchange_shipment for r in view.returns if r.exchange_shipment is not None
    ]
    for shipment in parcels:
        if shipment.tracking_number is None:
            continue
        sent = [
            e for (tracking, _), e in run.events.items() if tracking == shipment.tracking_number
        ]
        ordered = sorted(sent, key=lambda e: e.occurred_at)
        assert [e.event_id for e in shipment.events] == [e.event_id for e in ordered], (
            shipment.shipment_id,
            [e.event_id for e in shipment.events],
            [e.event_id for e in ordered],
        )
        assert shipment.status is expected_status(sent), (shipment.shipment_id, shipment.status)


PROGRESS = {
    CarrierStatus.PRE_TRANSIT: 1,
    CarrierStatus.IN_TRANSIT: 2,
    CarrierStatus.OUT_FOR_DELIVERY: 3,
    CarrierStatus.DELIVERED: 4,
    CarrierStatus.RETURN_TO_SENDER: 4,
    CarrierStatus.FAILURE: 4,
}


def expected_status(events: list[CarrierEvent]) -> CarrierStatus | None:
    status, reached = None, 0
    for event in events:  # in the order they were sent
        if PROGRESS[event.status] > reached:
            status, reached = event.status, PROGRESS[event.status]
    return status


def check_nothing_left_after_cancel(run: Run) -> None:
    if run.cancelled_after is None:
        return
    later = run.fakes.calls[run.cancelled_after :]
    shipped = [
        c.name
        for c in later
        if c.name == "capture_payment"
        or (c.name == "book_shipment" and c.arg.direction is ShipmentDirection.OUTBOUND)
    ]
    assert not shipped, f"after an accepted cancel: {shipped}"


def check_closed_order_holds_nothing(run: Run, view: OrderView) -> None:
    """A closed order keeps no stock and no uncaptured money, unless an operator gave up the
    step that would have released it (the count, or the authorization's lapse, is theirs)."""

    def gave_up(*steps: str) -> bool:
        return any(
            h.resolution is HoldResolution.REJECTED and h.detail.startswith(steps)
            for h in view.holds
        )

    if not gave_up("Release ", "Commit "):
        held = {order: units for order, units in run.fakes.held.items() if units}
        assert not held, f"{view.status} order still holds stock: {held}"
    payment = view.payment
    if payment.authorization_id is not None and not gave_up("Void ", "Release the uncaptured"):
        assert payment.captured + payment.released == payment.authorized, payment


# ---- the property --------------------------------------------------------------------------


async def play(env: WorkflowEnvironment, scenario: Scenario) -> None:
    fakes = FakeOrderSystems()
    async with fake_worker(env.client, fakes) as task_queue:
        run = Run(env, fakes, task_queue, scenario)
        try:
            await run.start()
            note(f"order {run.order_id}: {scenario}")
            view = await check_at_rest(run, await run.settle())
            for n, step in enumerate(scenario.steps, start=1):
                if view.status in FINAL_STATUSES and not run.updates:
                    described = await run.describe()
                    if described.status is not WorkflowExecutionStatus.RUNNING:
                        break
                outcome = await run.play(step)
                note(f"step {n}: {step} -> {outcome}")
                view = await check_at_rest(run, await run.settle())
                note(
                    f"  at rest: {view.status}, holds open "
                    f"{[h.hold_id for h in view.holds if h.resolution is None]}"
                )
            # The end: warehouses pack, the order comes to rest once more.
            fakes.held_warehouses.clear()
            await check_at_rest(run, await run.settle())
        except BaseException:
            # The example's own failure is the one to report, not a teardown's after it.
            try:
                await run.stop(failed=True)
            except Exception as err:
                note(f"teardown after the failure failed too: {err!r}")
            raise
        assert await run.stop(), "the order could not be brought to rest to terminate it"


class PrivateServer:
    """A time-skipping server for these examples alone, replaced after a failed example.

    Started as tests/conftest.py starts the session's `time_skipping_env`.
    """

    def __init__(self) -> None:
        self._env: WorkflowEnvironment | None = None

    async def env(self) -> WorkflowEnvironment:
        if self._env is None:
            env = await bounded(
                WorkflowEnvironment.start_time_skipping(
                    test_server_existing_path=venv_binary("temporal-test-server"),
                    data_converter=pydantic_data_converter,
                ),
                "starting the time-skipping server",
                60,
            )
            self._env = env
            await bounded(
                env.client.operator_service.add_search_attributes(
                    AddSearchAttributesRequest(
                        namespace=env.client.namespace,
                        search_attributes={
                            key.name: IndexedValueType.ValueType(key.indexed_value_type)
                            for key in SEARCH_ATTRIBUTES
                        },
                    )
                ),
                "registering the search attributes",
            )
        return self._env

    async def discard(self) -> None:
        env, self._env = self._env, None
        if env is not None:
            await bounded(env.shutdown(), "stopping the time-skipping server")


@pytest.fixture(scope="module")
async def private_server() -> AsyncIterator[PrivateServer]:
    server = PrivateServer()
    try:
        yield server
    finally:
        await server.discard()


# The suite's per-test net (300 s) is for one test, not for a search as long as one asks for;
# shrinking replays a failure hundreds of times: no net then.
@pytest.mark.timeout(0 if SHRINK else max(300, 10 * EXAMPLES))
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=list(Phase) if SHRINK else [Phase.explicit, Phase.generate],
)
@given(scenario=scenarios())
async def test_no_order_is_stuck_doubled_or_failed(
    private_server: PrivateServer, scenario: Scenario
) -> None:
    env = await private_server.env()
    try:
        async with asyncio.timeout(EXAMPLE_DEADLINE):
            await play(env, scenario)
    except BaseException as err:
        # What the example left may keep this server from ever skipping time again.
        await private_server.discard()
        if isinstance(err, TimeoutError):
            raise AssertionError(f"the example took more than {EXAMPLE_DEADLINE:.0f}s") from None
        raise
