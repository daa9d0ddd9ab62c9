"""Every way an order's Update can go, and the answer each gets (api.order_calls.run_update).

The order here is a probe workflow under the order's workflow id, whose Updates wait, refuse
or fail on request, on a task queue of its own, so each outcome can be held at will: done
(200/201), still running past UPDATE_WAIT (202 with Location), refused (409 in the order's
words), failed in a way nobody planned (409 without internals, never a 500), never accepted
(503, saying it may still apply; the retry with the same Idempotency-Key applies it once), and
the workflow ending under a running Update. UPDATE_WAIT is 1 s here.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session
from temporalio import workflow
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.workflow import HandlerUnfinishedPolicy

from api.main import create_app
from models.orders import (
    CancelRequest,
    DeliveryOption,
    FeedbackRequest,
    FeedbackView,
    GoodwillRefundRequest,
    InquiryRequest,
    InquiryView,
    OrderItem,
    OrderStatus,
    OrderView,
    RefundKind,
    RefundView,
)
from models.projection import placed_order_record
from models.wire import (
    QUERY_STATUS,
    UPDATE_ASK,
    UPDATE_CANCEL,
    UPDATE_FEEDBACK,
    UPDATE_REFUND,
    order_workflow_id,
)
from settings import DEV_API_KEYS
from tests.api.conftest import OPERATOR_KEY, assert_problem, http_client
from tests.conftest import E2EStack, eventually, new_id

WAIT = timedelta(seconds=1)


@workflow.defn(name="UpdateProbe")
class UpdateProbe:
    """Stands in for an order: its Updates do what the request asks of them."""

    @workflow.init
    def __init__(self, view: OrderView) -> None:
        self.view = view
        self.released = False
        self.finished = False
        self.refunds = 0
        self.waiting = False

    @workflow.run
    async def run(self, view: OrderView) -> None:
        await workflow.wait_condition(lambda: self.finished)

    @workflow.signal
    def release(self) -> None:
        self.released = True

    @workflow.signal
    def finish(self) -> None:
        self.finished = True

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> OrderView:
        return self.view

    @workflow.query
    def refunds_made(self) -> int:
        return self.refunds

    @workflow.query
    def waiting_for_the_end(self) -> bool:
        return self.waiting

    @workflow.update(name=UPDATE_CANCEL, unfinished_policy=HandlerUnfinishedPolicy.ABANDON)
    async def cancel(self, request: CancelRequest) -> OrderView:
        """Holds on until released: a cancel the warehouse is slow to confirm."""
        await workflow.wait_condition(lambda: self.released)
        self.view.status = OrderStatus.CANCELLED
        return self.view

    @workflow.update(name=UPDATE_REFUND)
    async def refund(self, request: GoodwillRefundRequest) -> RefundView:
        self.refunds += 1
        return RefundView(
            refund_id=f"RF-{self.refunds}",
            kind=RefundKind.GOODWILL,
            amount=request.amount,
            reason=request.reason,
            at=workflow.now(),
        )

    @workflow.update(name=UPDATE_ASK)
    async def ask(self, request: InquiryRequest) -> InquiryView:
        return InquiryView(inquiry_id="Q-1", message=request.message, at=workflow.now())

    @ask.validator
    def validate_ask(self, request: InquiryRequest) -> None:
        if request.message == "refuse":
            raise ApplicationError("this order takes no more questions", type="InquiryRefused")
        if request.message == "crash":
            raise ValueError("internal detail 4711")

    @workflow.update(name=UPDATE_FEEDBACK, unfinished_policy=HandlerUnfinishedPolicy.ABANDON)
    async def give_feedback(self, request: FeedbackRequest) -> FeedbackView:
        if request.comment == "refused later":
            raise ApplicationError("the rating closed meanwhile", type="FeedbackRefused")
        if request.comment == "fails":
            raise ApplicationError("internal detail 4712", type="SomethingBroke")
        if request.comment == "until the end":
            self.waiting = True
            await workflow.wait_condition(lambda: False)
        return FeedbackView(rating=request.rating, comment=request.comment, at=workflow.now())


@pytest.fixture(scope="module")
async def probe_api(e2e_stack: E2EStack) -> AsyncIterator[httpx.AsyncClient]:
    settings = e2e_stack.settings.model_copy(update={"api_keys": DEV_API_KEYS, "update_wait": WAIT})
    app: FastAPI = create_app(settings, temporal_client=e2e_stack.client, engine=e2e_stack.engine)
    async with app.router.lifespan_context(app), http_client(app, OPERATOR_KEY) as http:
        yield http


@pytest.fixture
async def task_queue(e2e_stack: E2EStack) -> AsyncIterator[str]:
    """A task queue with a worker running the probe."""
    queue = new_id("probe")
    async with Worker(
        e2e_stack.client,
        task_queue=queue,
        workflows=[UpdateProbe],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield queue


async def start_probe(stack: E2EStack, queue: str) -> tuple[str, WorkflowHandle[UpdateProbe, None]]:
    """A probe under a fresh order's workflow id, with the order in the read model."""
    order_id = new_id("ord_probe").replace("-", "_")
    now = datetime.now(UTC)
    view = OrderView(
        order_id=order_id,
        customer_id="cus_ada",
        placed_by="dev-client",
        status=OrderStatus.FULFILLING,
        items=[OrderItem(sku="BOOK-DUNE", quantity=1)],
        delivery=DeliveryOption.STANDARD,
        placed_at=now,
        updated_at=now,
    )
    with Session(stack.engine) as session:
        session.add(placed_order_record(view))
        session.commit()
    handle = await stack.client.start_workflow(
        UpdateProbe.run, view, id=order_workflow_id(order_id), task_queue=queue
    )
    return order_id, handle


async def test_an_update_running_past_the_wait_is_202_and_finishes_on_its_own(
    probe_api: httpx.AsyncClient, e2e_stack: E2EStack, task_queue: str
) -> None:
    order_id, handle = await start_probe(e2e_stack, task_queue)
    began = time.monotonic()
    held = await probe_api.post(f"/orders/{order_id}/cancel")
    assert held.status_code == 202, held.text
    assert time.monotonic() - began < 5
    assert held.headers["location"] == f"/orders/{order_id}"
    assert held.json()["order_id"] == order_id  # the order as it stands

    await handle.signal(UpdateProbe.release)
    done = await probe_api.post(f"/orders/{order_id}/cancel")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "cancelled"
    await handle.signal(UpdateProbe.finish)


async def test_an_update_nobody_accepts_is_503_and_the_keyed_retry_applies_it_once(
    probe_api: httpx.AsyncClient, e2e_stack: E2EStack
) -> None:
    queue = new_id("probe-nobody")  # no worker polls it yet
    order_id, handle = await start_probe(e2e_stack, queue)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"amount": 250, "reason": "late"}
    began = time.monotonic()
    pending = await probe_api.post(f"/orders/{order_id}/refunds", json=body, headers=key)
    problem = assert_problem(pending, 503)
    assert time.monotonic() - began < 5
    assert problem["type"].endswith("/update-not-accepted")
    assert "may still be applied" in problem["detail"]
    assert "same Idempotency-Key" in problem["detail"]
    assert pending.headers["retry-after"] == "5"

    async with Worker(
        e2e_stack.client,
        task_queue=queue,
        workflows=[UpdateProbe],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        retried = await probe_api.post(f"/orders/{order_id}/refunds", json=body, headers=key)
        assert retried.status_code == 201, retried.text
        assert retried.json()["refund_id"] == "RF-1"
        again = await probe_api.post(f"/orders/{order_id}/refunds", json=body, headers=key)
        assert again.json() == retried.json()
        assert await handle.query(UpdateProbe.refunds_made) == 1
        await handle.signal(UpdateProbe.finish)


async def test_a_validators_refusal_is_409_in_its_words_and_a_crash_tells_nothing(
    probe_api: httpx.AsyncClient, e2e_stack: E2EStack, task_queue: str
) -> None:
    order_id, handle = await start_probe(e2e_stack, task_queue)
    url = f"/orders/{order_id}/inquiries"
    refused = assert_problem(await probe_api.post(url, json={"message": "refuse"}), 409)
    assert refused["type"].endswith("/inquiry-refused")
    assert refused["detail"] == "this order takes no more questions"
    crashed = await probe_api.post(url, json={"message": "crash"})
    problem = assert_problem(crashed, 409)
    assert problem["type"].endswith("/update-failed")
    assert "4711" not in crashed.text
    taken = await probe_api.post(url, json={"message": "Where is it?"})
    assert taken.status_code == 201, taken.text
    await handle.signal(UpdateProbe.finish)


async def test_a_handlers_refusal_is_409_and_its_failure_tells_nothing(
    probe_api: httpx.AsyncClient, e2e_stack: E2EStack, task_queue: str
) -> None:
    order_id, handle = await start_probe(e2e_stack, task_queue)
    url = f"/orders/{order_id}/feedback"
    later = assert_problem(
        await probe_api.post(url, json={"rating": 3, "comment": "refused later"}), 409
    )
    assert later["type"].endswith("/feedback-refused")
    assert later["detail"] == "the rating closed meanwhile"
    failed = await probe_api.post(url, json={"rating": 3, "comment": "fails"})
    assert assert_problem(failed, 409)["type"].endswith("/update-failed")
    assert "4712" not in failed.text
    await handle.signal(UpdateProbe.finish)


async def test_an_order_that_ends_under_a_running_update_answers_as_closed(
    e2e_stack: E2EStack, task_queue: str
) -> None:
    settings = e2e_stack.settings.model_copy(
        update={"api_keys": DEV_API_KEYS, "update_wait": timedelta(seconds=10)}
    )
    app = create_app(settings, temporal_client=e2e_stack.client, engine=e2e_stack.engine)
    order_id, handle = await start_probe(e2e_stack, task_queue)
    async with app.router.lifespan_context(app), http_client(app, OPERATOR_KEY) as http:
        body = {"rating": 1, "comment": "until the end"}
        answer = asyncio.create_task(http.post(f"/orders/{order_id}/feedback", json=body))

        async def waiting() -> bool:
            return await handle.query(UpdateProbe.waiting_for_the_end)

        await eventually(waiting, bool, within=5)
        await handle.signal(UpdateProbe.finish)
        problem = assert_problem(await answer, 409)
    assert problem["type"].endswith("/order-closed")
