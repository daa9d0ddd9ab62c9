"""GET /metrics: the API counts each answer by route template and status, the orders placed and
the carrier webhooks received by outcome; who may read it is METRICS_AUTH's."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from settings import DEV_API_KEYS, Settings
from tests.api.conftest import (
    CLIENT_KEY,
    OPERATOR_KEY,
    carrier_event,
    follow,
    has_status,
    http_client,
    place,
    post_event,
)
from tests.conftest import E2EStack

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def samples(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(seen: Samples, name: str, **labels: str) -> float:
    return seen.get((name, frozenset(labels.items())), 0.0)


async def test_a_placed_order_its_reads_and_its_webhook_are_counted(
    api: httpx.AsyncClient, anonymous_api: httpx.AsyncClient, webhook_secret: str
) -> None:
    before = await samples(anonymous_api)  # open in development
    order_id = (await place(api))["order_id"]
    shipped = await follow(api, order_id, has_status("shipped"))
    tracking = shipped["shipments"][0]["tracking_number"]
    event = carrier_event(tracking, "in_transit")
    assert (await post_event(api, event, webhook_secret)).status_code == 200
    assert (await post_event(api, event, webhook_secret)).status_code == 200  # a duplicate
    after = await samples(anonymous_api)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("ordermill_orders_placed_total") == 1
    assert grew("ordermill_http_requests_total", method="POST", route="/orders", status="202") == 1
    # The route template, never the order's id: one series for every order.
    read = {"method": "GET", "route": "/orders/{order_id}", "status": "200"}
    assert grew("ordermill_http_requests_total", **read) >= 1
    assert not any(order_id in str(labels) for _, labels in after)
    assert grew("ordermill_webhook_receipts_total", outcome="signalled") == 1
    assert grew("ordermill_webhook_receipts_total", outcome="duplicate") == 1
    count = "ordermill_http_request_duration_seconds_count"
    assert grew(count, method="POST", route="/orders") == 1


async def test_an_unmatched_path_is_one_series(anonymous_api: httpx.AsyncClient) -> None:
    before = await samples(anonymous_api)
    for path in ("/nope", "/nope/again"):
        assert (await anonymous_api.get(path)).status_code == 404
    after = await samples(anonymous_api)
    name, labels = "ordermill_http_requests_total", {"method": "GET", "route": "unmatched"}
    labels["status"] = "404"
    assert value(after, name, **labels) - value(before, name, **labels) == 2


def test_metrics_are_open_in_development_and_operator_only_in_production() -> None:
    assert Settings(app_env="development").effective_metrics_auth == "open"
    assert Settings(app_env="production").effective_metrics_auth == "operator"
    problems = Settings(app_env="production", metrics_auth="open").production_problems()
    assert any("METRICS_AUTH" in problem for problem in problems)


@pytest.fixture
async def operator_only_app(e2e_stack: E2EStack) -> AsyncIterator[FastAPI]:
    settings = e2e_stack.settings.model_copy(
        update={"api_keys": DEV_API_KEYS, "metrics_auth": "operator"}
    )
    app = create_app(settings, temporal_client=e2e_stack.client, engine=e2e_stack.engine)
    async with app.router.lifespan_context(app):
        yield app


async def test_operator_only_metrics_refuse_a_client_and_no_key(operator_only_app: FastAPI) -> None:
    answers = {}
    for who, key in (("no key", None), ("client", CLIENT_KEY), ("operator", OPERATOR_KEY)):
        async with http_client(operator_only_app, key) as http:
            answers[who] = (await http.get("/metrics")).status_code
    assert answers == {"no key": 401, "client": 403, "operator": 200}
