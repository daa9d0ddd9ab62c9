"""The reconciliation end to end: real orders on a dev server of its own, the real worker, the
real ledgers; then a ledger corrupted by hand, and the report names exactly what was done.

Its own dev server and database: the reconciliation reads every order there is, so the other
e2e tests' orders (and the faults they inject) must not be among them.
"""

import urllib.request
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    ScheduleRange,
    WorkflowHandle,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from database import init_database
from models.orders import OrderStatus, OrderView, PlaceOrderInput
from models.reconcile import ReconcileInput, ReconcileOutcome
from models.shipments import CarrierEvent, CarrierStatus
from models.tables import (
    OrderEvent,
    OrderRecord,
    PaymentTransaction,
    ReconciliationRun,
    SentEmail,
    Stock,
)
from models.wire import (
    ORDER_STATUS,
    ORDER_WORKFLOW,
    QUERY_STATUS,
    RECONCILE_ON_REQUEST,
    RECONCILE_SCHEDULE,
    RECONCILE_WORKFLOW,
    SEARCH_ATTRIBUTES,
    SIGNAL_CARRIER_EVENT,
    order_workflow_id,
)
from schedules import ensure_reconcile_schedule
from settings import DEV_API_KEYS, Settings
from temporal_client import start_order
from tests.api.conftest import OPERATOR_KEY, bearer
from tests.conftest import eventually, free_port, new_id, venv_binary
from tests.e2e.test_orders_e2e import place
from worker import build_worker, metrics_runtime
from workflows.reconcile import ReconcileWorkflow

pytestmark = pytest.mark.e2e
CLIENT_KEY = "omk_dev_client"


@dataclass
class Shop:
    env: WorkflowEnvironment
    client: Client  # the worker's, with its metrics endpoint
    engine: Engine
    settings: Settings
    metrics: str

    async def reconcile(self) -> ReconcileOutcome:
        # settle=0: every order counts, however recently it changed (the test waited).
        return await self.client.execute_workflow(
            ReconcileWorkflow.run,
            ReconcileInput(settle=timedelta(0)),
            id=new_id("reconcile-test"),
            task_queue="orders",
        )


@pytest.fixture(scope="module")
async def shop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shop]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    address = f"127.0.0.1:{free_port()}"
    client = await Client.connect(
        env.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        runtime=metrics_runtime(address),
    )
    data_dir = tmp_path_factory.mktemp("reconcile-data")
    settings = Settings(
        data_dir=data_dir,
        fulfillment_delay=timedelta(seconds=1),
        return_window=timedelta(seconds=1),
        temporal_address=env.client.service_client.config.target_host,
    )
    engine = init_database(settings.effective_database_url)
    try:
        with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
            async with build_worker(client, settings, engine, executor):
                yield Shop(env, client, engine, settings, address)
    finally:
        engine.dispose()
        await env.shutdown()


async def status_of(handle: WorkflowHandle[object, OrderView]) -> OrderView:
    return await handle.query(QUERY_STATUS, result_type=OrderView)


async def until_listed_as(shop: Shop, order_id: str, status: OrderStatus) -> None:
    """The order's read model and its search attribute (as visibility lists it) agree."""

    async def both() -> tuple[str | None, list[str]]:
        with Session(shop.engine) as session:
            record = session.get(OrderRecord, order_id)
        listed = [
            str(w.typed_search_attributes.get(ORDER_STATUS))
            async for w in shop.client.list_workflows(
                f'WorkflowId = "{order_workflow_id(order_id)}"'
            )
        ]
        return (record.status if record else None), listed

    await eventually(both, lambda seen: seen == (status.value, [status.value]), within=30)


async def deliver(handle: WorkflowHandle[object, OrderView], view: OrderView) -> None:
    for parcel in view.shipments:
        assert parcel.tracking_number is not None
        await handle.signal(
            SIGNAL_CARRIER_EVENT,
            CarrierEvent(
                event_id=f"{parcel.tracking_number}-1",
                tracking_number=parcel.tracking_number,
                status=CarrierStatus.DELIVERED,
                occurred_at=datetime.now(UTC),
            ),
        )


async def orders_of_every_kind(shop: Shop) -> dict[str, str]:
    """Shipped and waiting, two parcels, delivered and completed (then returned nothing),
    declined, held for review: their ids by what they are."""
    orders: dict[str, PlaceOrderInput] = {
        "shipped": place(new_id("rec-shipped"), "tok_visa", BOOK_DUNE=2),
        "two_parcels": place(new_id("rec-split"), "tok_visa", BOOK_NEUROMANCER=1, BOOK_EARTHSEA=1),
        "completed": place(new_id("rec-done"), "tok_visa", BOOK_DUNE=1, EBOOK_DUNE=1),
        "declined": place(new_id("rec-declined"), "tok_chargeDeclined", BOOK_DUNE=1),
        "held": place(new_id("rec-held"), "tok_visa", BOOK_FIRST_EDITION=1),
    }
    handles = {name: await start_order(shop.client, order) for name, order in orders.items()}
    wanted = {
        "shipped": OrderStatus.SHIPPED,
        "two_parcels": OrderStatus.SHIPPED,
        "completed": OrderStatus.SHIPPED,
        "declined": OrderStatus.PAYMENT_DECLINED,
        "held": OrderStatus.ON_HOLD,
    }
    for name, handle in handles.items():
        view = await eventually(
            lambda h=handle: status_of(h),  # type: ignore[misc]
            lambda v, name=name: v.status is wanted[name],  # type: ignore[misc]
            within=30,
        )
        if name == "completed":
            await deliver(handle, view)
            assert (await handle.result()).status is OrderStatus.COMPLETED
            wanted[name] = OrderStatus.COMPLETED
    for name, order in orders.items():
        await until_listed_as(shop, order.order_id, wanted[name])
    return {name: order.order_id for name, order in orders.items()}


def scraped(shop: Shop, name: str, kind: str) -> float:
    with urllib.request.urlopen(f"http://{shop.metrics}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(name + "{") and f'kind="{kind}"' in line
    )


async def test_clean_orders_reconcile_and_a_corrupted_ledger_reports_exactly_the_damage(
    shop: Shop,
) -> None:
    ids = await orders_of_every_kind(shop)

    clean = await shop.reconcile()
    assert clean.status == "finished"
    assert clean.found == {}
    assert clean.checked["orders"] >= 5 and clean.checked["open_orders"] >= 3
    assert clean.checked["stock_rows"] >= 6 and clean.checked["ledger_rows"] >= 8

    # The damage: an extra capture of a parcel already paid for, one unit too many on a
    # shelf, and an order that no worker ever picks up, in `received` for two hours.
    with Session(shop.engine, expire_on_commit=False) as session:
        capture = session.exec(
            select(PaymentTransaction).where(
                PaymentTransaction.order_id == ids["shipped"], PaymentTransaction.kind == "capture"
            )
        ).one()
        session.add(
            PaymentTransaction(
                id="txn_forged",
                idempotency_key=new_id("forged"),
                order_id=capture.order_id,
                kind="capture",
                status="approved",
                amount=100,
                authorization_id=capture.authorization_id,
                shipment_id=capture.shipment_id,
            )
        )
        session.execute(
            update(Stock)
            .where(col(Stock.sku) == "BOOK-EARTHSEA", col(Stock.warehouse) == "WH-WEST")
            .values(on_hand=col(Stock.on_hand) + 1)
        )
        session.commit()
    stuck = await stuck_in_received(shop)
    try:
        damaged = await shop.reconcile()
    finally:
        await stuck.terminate("test over")
    assert damaged.found == {
        "duplicate_capture": 1,
        "capture_exceeds_authorization": 1,
        "ledger_mismatch": 1,
        "stock_on_hand_mismatch": 1,
        "stuck_order": 1,
    }
    report = await report_of(shop, damaged.run_id)
    assert [(d["kind"], d["subject"]) for d in report["discrepancies"]] == [
        ("capture_exceeds_authorization", capture.authorization_id),
        ("duplicate_capture", f"{ids['shipped']}/{capture.shipment_id}"),
        ("ledger_mismatch", ids["shipped"]),
        ("stock_on_hand_mismatch", "BOOK-EARTHSEA@WH-WEST"),
        ("stuck_order", stuck.id.removeprefix("order-")),
    ]
    ledger = next(d for d in report["discrepancies"] if d["kind"] == "ledger_mismatch")
    recorded = f"captured {capture.amount + 100} in the ledger, {capture.amount} recorded"
    assert recorded in ledger["detail"]

    # Counted once per kind, and support is told, once, through the outbox.
    for kind in damaged.found:
        assert scraped(shop, "ordermill_reconciliation_discrepancies_total", kind) == 1
    with Session(shop.engine) as session:
        emails = session.exec(
            select(SentEmail).where(SentEmail.kind == "reconciliation_report")
        ).all()
    assert [(e.recipient, e.order_id) for e in emails] == [
        (shop.settings.support_email, f"reconciliation-{damaged.run_id}")
    ]
    assert emails[0].message is not None and "stuck_order: 1" in emails[0].message


async def stuck_in_received(shop: Shop) -> WorkflowHandle[object, object]:
    """An order started on a task queue no worker polls, recorded two hours ago."""
    order = place(new_id("rec-stuck"), "tok_visa", BOOK_DUNE=1)
    handle = await shop.client.start_workflow(
        ORDER_WORKFLOW,
        order,
        id=order_workflow_id(order.order_id),
        task_queue=new_id("nobody-polls"),
        search_attributes=TypedSearchAttributes([SearchAttributePair(ORDER_STATUS, "received")]),
    )
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    with Session(shop.engine) as session:
        session.add(
            OrderRecord(
                order_id=order.order_id,
                customer_id=order.customer_id,
                status="received",
                placed_at=long_ago,
                updated_at=long_ago,
                view_json="{}",
            )
        )
        session.add(
            OrderEvent(
                order_id=order.order_id,
                seq=1,
                at=long_ago,
                event="order_received",
                status="received",
            )
        )
        session.commit()
    await until_listed_as(shop, order.order_id, OrderStatus.RECEIVED)
    return handle


@asynccontextmanager
async def api(
    shop: Shop, key: str | None, engine: Engine | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    settings = shop.settings.model_copy(update={"api_keys": DEV_API_KEYS})
    app = create_app(settings, temporal_client=shop.client, engine=engine or shop.engine)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://ordermill.test",
            headers=bearer(key) if key else {},
        ) as http,
    ):
        yield http


async def report_of(shop: Shop, run_id: str) -> dict[str, Any]:
    async with api(shop, OPERATOR_KEY) as http:
        response = await http.get(f"/reconciliation/runs/{run_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_an_operator_runs_the_reconciliation_and_reads_its_report(
    shop: Shop, tmp_path: Path
) -> None:
    async with api(shop, CLIENT_KEY) as http:
        assert (await http.post("/reconciliation/runs")).status_code == 403
        assert (await http.get("/reconciliation/reports/latest")).status_code == 403
    fresh = init_database(f"sqlite:///{tmp_path / 'empty.db'}")
    async with api(shop, OPERATOR_KEY, fresh) as http:
        none_yet = await http.get("/reconciliation/reports/latest")
        assert none_yet.status_code == 404, none_yet.text
        assert (await http.get("/reconciliation/runs/rec_nothing")).status_code == 404
    fresh.dispose()

    async with api(shop, OPERATOR_KEY) as http:
        started = await http.post("/reconciliation/runs")
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        assert location == f"/reconciliation/runs/{started.json()['run_id']}"

        async def run() -> dict[str, Any]:
            return dict((await http.get(location)).json())

        finished = await eventually(run, lambda r: r["status"] != "running", within=30)
        assert finished["finished_at"] is not None and "stock_rows" in finished["checked"]
        latest = await http.get("/reconciliation/reports/latest")
        assert latest.json()["run_id"] == finished["run_id"]

        # A run in progress (one no worker picks up) is named, and no second one starts.
        blocker = await shop.client.start_workflow(
            RECONCILE_WORKFLOW,
            ReconcileInput(run_id="rec_inprogress"),
            id=RECONCILE_ON_REQUEST,
            task_queue=new_id("nobody-polls"),
        )
        with Session(shop.engine) as session:
            session.add(
                ReconciliationRun(
                    run_id="rec_inprogress",
                    workflow_id=RECONCILE_ON_REQUEST,
                    started_at=datetime.now(UTC),
                )
            )
            session.commit()
        try:
            refused = await http.post("/reconciliation/runs")
        finally:
            await blocker.terminate("test over")
        assert refused.status_code == 409, refused.text
        assert "rec_inprogress" in refused.json()["detail"]
        assert refused.headers["Location"] == "/reconciliation/runs/rec_inprogress"


async def test_the_schedule_is_created_once_and_updated_in_place(shop: Shop) -> None:
    assert await ensure_reconcile_schedule(shop.client, "0 2 * * *", paused=True) == "created"
    # Run again with another time: updated, and the pause (an operator's, say) is kept.
    assert await ensure_reconcile_schedule(shop.client, "30 3 * * *") == "updated"
    described = await shop.client.get_schedule_handle(RECONCILE_SCHEDULE).describe()
    schedule = described.schedule
    assert schedule.state.paused
    assert schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    # The server keeps a cron expression as its calendar: 03:30 every day.
    assert [(c.minute, c.hour) for c in schedule.spec.calendars] == [
        ((ScheduleRange(30),), (ScheduleRange(3),))
    ]
    assert schedule.spec.time_zone_name == "UTC"
    assert isinstance(schedule.action, ScheduleActionStartWorkflow)
    assert schedule.action.workflow == RECONCILE_WORKFLOW
