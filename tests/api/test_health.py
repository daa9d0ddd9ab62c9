"""Liveness, readiness, production start-up refusal and the catch-all error answer."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine
from sqlmodel import Session
from temporalio.client import Client, RetryConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from models.tables import IdempotencyKey
from settings import Settings
from tests.api.conftest import (
    OPERATOR_KEY,
    assert_problem,
    bearer,
    carrier_event,
    follow,
    order_body,
    orphan_shipment,
    place,
    post_event,
)
from tests.conftest import E2EStack, venv_binary


async def test_healthz(api: httpx.AsyncClient) -> None:
    response = await api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_temporal_and_the_database_answer(api: httpx.AsyncClient) -> None:
    response = await api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"temporal": "ok", "database": "ok"}}


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://ordermill.test",
            headers=bearer(OPERATOR_KEY),
        ) as http,
    ):
        yield http


@pytest.fixture(scope="module")
async def lost_temporal() -> Client:
    """A client whose Temporal server has gone away since it connected.

    It retries little, so each call fails within a fraction of a second.
    """
    doomed = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    client = await Client.connect(
        doomed.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        retry_config=RetryConfig(max_retries=1, max_elapsed_time_millis=500),
    )
    await doomed.shutdown()
    return client


@pytest.fixture
async def unreachable_api(
    e2e_stack: E2EStack, lost_temporal: Client
) -> AsyncIterator[httpx.AsyncClient]:
    """Temporal gone and a database that cannot open."""
    engine = create_engine("sqlite:////nonexistent-dir/ordermill.db")
    async with serve(
        create_app(e2e_stack.settings, temporal_client=lost_temporal, engine=engine)
    ) as http:
        yield http
    engine.dispose()


@pytest.fixture
async def temporal_down_api(
    e2e_stack: E2EStack, lost_temporal: Client
) -> AsyncIterator[httpx.AsyncClient]:
    """Temporal gone, the database fine."""
    async with serve(
        create_app(e2e_stack.settings, temporal_client=lost_temporal, engine=e2e_stack.engine)
    ) as http:
        yield http


async def test_readyz_is_503_when_dependencies_are_down(
    unreachable_api: httpx.AsyncClient,
) -> None:
    problem = assert_problem(await unreachable_api.get("/readyz"), 503)
    assert problem["checks"]["temporal"].startswith("unreachable")
    assert problem["checks"]["database"].startswith("unreachable")
    assert (await unreachable_api.get("/healthz")).status_code == 200


async def test_temporal_down_is_503_and_a_retry_later_goes_through(
    temporal_down_api: httpx.AsyncClient,
    api: httpx.AsyncClient,
    e2e_stack: E2EStack,
    webhook_secret: str,
) -> None:
    key = str(uuid.uuid4())
    down = await temporal_down_api.post(
        "/orders", json=order_body(), headers={"Idempotency-Key": key}
    )
    problem = assert_problem(down, 503)
    assert problem["type"].endswith("/temporal-unavailable")
    assert down.headers["retry-after"] == "5"
    # The key was claimed before the start failed: the client's retry starts that very order.
    with Session(e2e_stack.engine) as session:
        claimed = session.get(IdempotencyKey, ("dev-operator", key))
    assert claimed is not None
    retried = await api.post("/orders", json=order_body(), headers={"Idempotency-Key": key})
    assert retried.status_code == 202
    assert retried.json()["order_id"] == claimed.order_id

    assert_problem(await temporal_down_api.post("/orders/ord_anything/cancel"), 503)

    tracking = orphan_shipment(e2e_stack.engine, "OMDOWN")
    event = carrier_event(tracking, "in_transit")
    assert_problem(await post_event(temporal_down_api, event, webhook_secret), 503)
    # Not a duplicate on the carrier's retry: the first delivery never reached the order.
    assert (await post_event(api, event, webhook_secret)).json()["outcome"] == "order_closed"


async def test_reading_an_order_falls_back_to_the_read_model_when_temporal_is_down(
    temporal_down_api: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    view = await place(api)
    await follow(api, view["order_id"], lambda v: v["status"] != "received")
    response = await temporal_down_api.get(f"/orders/{view['order_id']}")
    assert response.status_code == 200
    assert response.json()["order_id"] == view["order_id"]
    # Without Temporal, an id the read model does not know may just be too new: 503, not 404.
    assert_problem(await temporal_down_api.get("/orders/ord_neverplaced"), 503)


async def test_production_refuses_to_start_on_development_secrets(e2e_stack: E2EStack) -> None:
    settings = Settings(app_env="production", data_dir=e2e_stack.settings.data_dir)
    app = create_app(settings, temporal_client=e2e_stack.client, engine=e2e_stack.engine)
    with pytest.raises(RuntimeError, match="CARRIER_WEBHOOK_SECRET"):
        async with app.router.lifespan_context(app):
            pass


async def test_an_unexpected_error_is_a_500_problem_without_internals(
    e2e_stack: E2EStack,
) -> None:
    app: FastAPI = create_app(
        e2e_stack.settings, temporal_client=e2e_stack.client, engine=e2e_stack.engine
    )

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ordermill.test"
    ) as http:
        response = await http.get("/boom")
    problem = assert_problem(response, 500)
    assert "hunter2" not in response.text
    assert problem["type"].endswith("/internal-error")
