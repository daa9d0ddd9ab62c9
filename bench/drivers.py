"""What the bench does to the stack: orders driven through Temporal alone, or through ordermill.

The drivers play the same part: start an order, poll until it waits for its delivery, deliver
it, poll until it shows `delivered`. The ceiling, which has no read model, polls with a workflow
query and delivers with a signal; the order's steps bare are polled with `describe` and
delivered with a signal; ordermill is polled with `GET /orders/{id}` (its read model)
and delivered with a signed carrier webhook. Polling is at `poll` while the order is being
processed and at the finer `fast_poll` once the delivery is sent, so the delivery latency has
that resolution. A ceiling poll loads the server and its worker; an ordermill poll loads the API
and the database, so the intervals are a compromise between resolution and load.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from tqdm import tqdm

from api.signatures import SIGNATURE_HEADER, sign
from bench import steps
from bench.shape import AWAITING, DELIVERED, DELIVERED_SIGNAL, STAGE_QUERY, BareOrder
from models.orders import FINAL_STATUSES, OrderStatus
from models.wire import ORDER_STATUS

ORDER_DEADLINE = 300.0  # seconds one order may take before it counts as failed
PLACING_LANES = 8  # enough to keep the open orders' window full, few enough to stay light
MAX_ERRORS_KEPT = 10

ORDER: dict[str, Any] = {
    "customer_id": "cus_ada",
    "items": [{"sku": "BOOK-DUNE", "quantity": 1}],
    "delivery": "standard",
    "payment": {"token": "tok_visa"},
}


def api_headers() -> dict[str, str]:
    key = os.environ.get("ORDERMILL_API_KEY", "omk_dev_operator")
    return {"Authorization": f"Bearer {key}"}


class OrderFailed(Exception):
    """One order did not get where it should; the message says where it stopped."""


@dataclass
class Timing:
    start: float  # POST /orders, or client.start_workflow
    deliver: float | None = None  # webhook or signal sent -> delivered visible
    order_id: str = ""
    tracking_number: str = ""


@dataclass
class Lanes:
    """The outcome of n orders driven `concurrency` at a time."""

    timings: list[Timing] = field(default_factory=list)
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0

    @property
    def per_second(self) -> float:
        return len(self.timings) / self.wall if self.wall > 0 else 0.0

    def fail(self, err: Exception) -> None:
        """Count a failed order and keep the first few reasons for the report."""
        self.failed += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(f"{type(err).__name__}: {err}"[:500])


async def run_lanes(
    n: int, concurrency: int, one: Callable[[int], Awaitable[Timing]], bar: tqdm[Any]
) -> Lanes:
    """Drive orders 0..n-1 through `concurrency` lanes, each starting its next order as soon
    as its last one is done. Failures are counted and kept, never raised."""
    result = Lanes()
    indices = iter(range(n))

    async def lane() -> None:
        for i in indices:
            try:
                result.timings.append(await asyncio.wait_for(one(i), ORDER_DEADLINE))
            except Exception as err:
                result.fail(err)
            bar.update(1)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(max(1, min(concurrency, n)))))
    result.wall = time.perf_counter() - started
    return result


async def signalled_order(
    start: Awaitable[WorkflowHandle[Any, Any]],
    waiting: Callable[[WorkflowHandle[Any, Any]], Awaitable[None]],
    signal: str,
    delivered: Callable[[WorkflowHandle[Any, Any]], Awaitable[None]] | None = None,
) -> Timing:
    """A bare workflow driven as an order: started, awaited `waiting` for its delivery, sent
    `signal`, then timed until `delivered` (or, without it, until it completes)."""
    began = time.perf_counter()
    handle = await start
    timing = Timing(start=time.perf_counter() - began, order_id=handle.id)
    await waiting(handle)
    sent = time.perf_counter()
    await handle.signal(signal)
    if delivered is not None:
        await delivered(handle)
    else:
        await handle.result()
    timing.deliver = time.perf_counter() - sent
    if delivered is not None:
        await handle.result()
    return timing


# ---- the ceiling ---------------------------------------------------------------------------


class CeilingDriver:
    def __init__(self, client: Client, task_queue: str, *, poll: float, fast_poll: float):
        self.client = client
        self.task_queue = task_queue
        self.poll, self.fast_poll = poll, fast_poll
        self.run_id = uuid.uuid4().hex[:8]
        self.polls = 0  # each one a workflow query

    async def order(self, i: int) -> Timing:
        return await signalled_order(
            self.client.start_workflow(
                BareOrder.run,
                f"{self.run_id}-{i}",
                id=f"bench-ceiling-{self.run_id}-{i}",
                task_queue=self.task_queue,
            ),
            lambda handle: self._until_stage(handle, AWAITING, self.poll),
            DELIVERED_SIGNAL,
            lambda handle: self._until_stage(handle, DELIVERED, self.fast_poll),
        )

    async def _until_stage(
        self, handle: WorkflowHandle[Any, Any], stage: str, interval: float
    ) -> None:
        while True:
            self.polls += 1
            try:
                if await handle.query(STAGE_QUERY, result_type=str) == stage:
                    return
            except RPCError:
                pass  # not queryable before its first workflow task: poll again
            await asyncio.sleep(interval)


class StepsDriver:
    """A bench order's steps, bare (bench/steps.py): started and signalled like the ceiling's,
    but polled with `describe`, which the server answers alone, so that its worker's CPU is
    the steps' and nothing else's, as ordermill's polls cost its worker nothing."""

    def __init__(self, client: Client, task_queue: str, *, poll: float):
        self.client = client
        self.task_queue = task_queue
        self.poll = poll
        self.run_id = uuid.uuid4().hex[:8]

    async def order(self, i: int) -> Timing:
        return await signalled_order(
            self.client.start_workflow(
                steps.STEPS_WORKFLOW,
                f"{self.run_id}-{i}",
                id=f"bench-steps-{self.run_id}-{i}",
                task_queue=self.task_queue,
            ),
            self._until_shipped,
            steps.DELIVERED_SIGNAL,
        )

    async def _until_shipped(self, handle: WorkflowHandle[Any, Any]) -> None:
        while True:  # the server's own view of the order's status
            described = await handle.describe()
            if described.typed_search_attributes.get(ORDER_STATUS) == steps.SHIPPED:
                return
            if described.status != WorkflowExecutionStatus.RUNNING:
                raise OrderFailed(f"{handle.id} ended {described.status} before it shipped")
            await asyncio.sleep(self.poll)


class StartProbe:
    """Raw `start_workflow` latency at the same moments as the ordermill orders, one a second.

    The probes go to a task queue no worker polls, so they cost the server a start and nothing
    more, and time out by themselves a minute later.
    """

    def __init__(self, client: Client, every: float = 1.0) -> None:
        self.client = client
        self.every = every
        self.run_id = uuid.uuid4().hex[:8]
        self.latencies: list[float] = []

    async def run(self) -> None:
        """Probe until cancelled."""
        for i in itertools.count():
            began = time.perf_counter()
            with contextlib.suppress(RPCError):
                await self.client.start_workflow(
                    BareOrder.run,
                    f"probe-{i}",
                    id=f"bench-probe-{self.run_id}-{i}",
                    task_queue=f"bench-probe-{self.run_id}",
                    execution_timeout=timedelta(minutes=1),
                )
                self.latencies.append(time.perf_counter() - began)
            await asyncio.sleep(self.every)


# ---- ordermill -----------------------------------------------------------------------------


class OrdermillDriver:
    def __init__(
        self, http: httpx.AsyncClient, webhook_secret: str, *, poll: float, fast_poll: float
    ):
        self.http = http
        self.secret = webhook_secret
        self.poll, self.fast_poll = poll, fast_poll
        self.run_id = uuid.uuid4().hex[:8]
        self.unanswered_reads = 0  # GETs answered with 404/503 while the order was starting
        self.polls = 0  # GET /orders/{id}, each one a read-model lookup in the API

    async def order(self, i: int) -> Timing:
        timing = await self.place_and_ship(i)
        timing.deliver = await self.deliver(timing.order_id, timing.tracking_number)
        return timing

    async def place(self, i: int) -> tuple[str, float]:
        """POST /orders: the new order's id and the seconds the request took."""
        began = time.perf_counter()
        key = {"Idempotency-Key": f"bench-{self.run_id}-{i}"}
        try:
            placed = await self.http.post("/orders", json=ORDER, headers=key)
        except httpx.TransportError:
            # Seen once in 10,000: a keep-alive connection the API closed as the request left.
            # A client retries; the key makes it the same order.
            placed = await self.http.post("/orders", json=ORDER, headers=key)
        elapsed = time.perf_counter() - began
        if placed.status_code != 202:
            raise OrderFailed(f"POST /orders answered {placed.status_code}: {placed.text[:300]}")
        return placed.json()["order_id"], elapsed

    async def place_and_ship(self, i: int) -> Timing:
        order_id, elapsed = await self.place(i)
        view = await self.until_status(order_id, OrderStatus.SHIPPED, self.poll)
        tracking = view["shipments"][0]["tracking_number"]
        return Timing(start=elapsed, order_id=order_id, tracking_number=tracking)

    async def deliver(
        self, order_id: str, tracking_number: str, poll: float | None = None
    ) -> float:
        """Post the carrier's signed `delivered` webhook; seconds until GET shows it."""
        body = json.dumps(
            {
                "event_id": f"bench-{uuid.uuid4().hex}",
                "tracking_number": tracking_number,
                "status": "delivered",
                "occurred_at": datetime.now(UTC).isoformat(),
                "description": "delivered (bench)",
            }
        ).encode()
        sent = time.perf_counter()
        answer = await self.http.post(
            "/webhooks/carrier",
            content=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.secret)},
        )
        if answer.status_code != 200 or answer.json().get("outcome") != "signalled":
            raise OrderFailed(
                f"webhook for {order_id} answered {answer.status_code}: {answer.text}"
            )
        await self.until_status(order_id, OrderStatus.DELIVERED, poll or self.fast_poll)
        return time.perf_counter() - sent

    async def until_status(
        self, order_id: str, wanted: OrderStatus, interval: float
    ) -> dict[str, Any]:
        while True:
            self.polls += 1
            got = await self.http.get(f"/orders/{order_id}")
            if got.status_code == 200:
                view: dict[str, Any] = got.json()
                status = OrderStatus(view["status"])
                if status is wanted:
                    return view
                if status in FINAL_STATUSES:
                    raise OrderFailed(f"order {order_id} ended {status.value}, not {wanted.value}")
            elif got.status_code in (404, 503):
                self.unanswered_reads += 1
            else:
                raise OrderFailed(f"GET /orders/{order_id} answered {got.status_code}: {got.text}")
            await asyncio.sleep(interval)


async def place_waiting_orders(
    driver: OrdermillDriver, client: Client, n: int, window: int, bar: tqdm[Any]
) -> Lanes:
    """Place n orders and wait until they all wait for their delivery, without polling each.

    Orders are placed through the API while fewer than `window` are still being processed;
    how many have shipped is counted by the server's visibility store (one cheap call a
    second), so the orders themselves are all the load there is. The timings carry only the
    order ids; `sample_deliveries` reads the tracking numbers of those it delivers.
    """
    result = Lanes()
    query = f'{ORDER_STATUS.name}="{OrderStatus.SHIPPED.value}"'
    baseline = (await client.count_workflows(query)).count
    shipped = 0
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < n:
            if next_index - result.failed - shipped >= window:
                await asyncio.sleep(0.1)
                continue
            i, next_index = next_index, next_index + 1
            try:
                order_id, elapsed = await driver.place(i)
                result.timings.append(Timing(start=elapsed, order_id=order_id))
            except Exception as err:
                result.fail(err)
                bar.update(1)

    started = time.perf_counter()
    placing = asyncio.gather(*(lane() for _ in range(min(PLACING_LANES, window, n))))
    last_progress = time.monotonic()
    while True:
        counted = (await client.count_workflows(query)).count - baseline
        if counted > shipped:
            bar.update(counted - shipped)
            shipped, last_progress = counted, time.monotonic()
        if placing.done() and shipped >= len(result.timings):
            break
        if time.monotonic() - last_progress > ORDER_DEADLINE:
            missing = len(result.timings) - shipped
            result.failed += missing
            result.errors.append(f"{missing} placed order(s) did not ship in {ORDER_DEADLINE}s")
            placing.cancel()
            break
        await asyncio.sleep(1.0)
    with contextlib.suppress(asyncio.CancelledError):
        await placing
    result.wall = time.perf_counter() - started
    return result


async def sample_deliveries(
    driver: OrdermillDriver, waiting: list[Timing], k: int, poll: float, bar: tqdm[Any]
) -> Lanes:
    """Deliver k of the waiting orders, one at a time, timing each webhook -> delivered."""
    chosen = random.sample(waiting, min(k, len(waiting)))

    async def one(i: int) -> Timing:
        order_id = chosen[i].order_id
        view = await driver.until_status(order_id, OrderStatus.SHIPPED, poll)
        tracking = view["shipments"][0]["tracking_number"]
        return Timing(
            start=0.0,
            deliver=await driver.deliver(order_id, tracking, poll),
            order_id=order_id,
        )

    return await run_lanes(len(chosen), 1, one, bar)
