"""The Grafana dashboard charts only what ordermill really exports.

Every PromQL query in deploy/grafana/dashboards/ must name metrics that a live API and a live
worker of this suite serve on their /metrics, after orders that place, pay, decline, hold and
finish: a renamed metric or a typo in a panel fails here, not on an operator's empty chart.
The names are scraped, never listed by hand.
"""

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlmodel import Session, col
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.cpu import ActivityCpuInterceptor
from api.main import create_app
from database import init_database
from models.holds import HoldResolution
from models.orders import OrderStatus
from models.reconcile import ReconcileInput
from models.shipments import CarrierStatus
from models.tables import Stock
from settings import DEV_API_KEYS, Settings
from tests.api.conftest import (
    OPERATOR_KEY,
    carrier_event,
    http_client,
    orphan_shipment,
    place,
    post_event,
)
from tests.conftest import E2EStack, free_port, new_id
from tests.fakes import FakeOrderSystems, fake_worker
from tests.workflows.conftest import OrderUnderTest
from worker import build_activities, build_email_sender, metrics_runtime
from workflows.reconcile import ReconcileWorkflow

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


# ---- the metric names a PromQL query reads -----------------------------------------------------


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# PromQL's aggregations, which may take `by (...)` or `without (...)` before their argument.
AGGREGATIONS = words(
    """
    sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk
    limit_ratio
    """
)
# Its functions (Prometheus 3); an unknown name before `(` is an error rather than skipped,
# so a misspelt function cannot hide the metric inside it.
FUNCTIONS = AGGREGATIONS | words(
    """
    abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month
    day_of_week day_of_year days_in_month delta deriv exp floor histogram_avg histogram_count
    histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum
    double_exponential_smoothing holt_winters hour idelta increase info irate label_join
    label_replace ln log2 log10 minute month predict_linear rate resets round scalar sgn sort
    sort_desc sort_by_label sort_by_label_desc sqrt time timestamp vector year avg_over_time
    min_over_time max_over_time sum_over_time count_over_time quantile_over_time
    stddev_over_time stdvar_over_time last_over_time present_over_time mad_over_time acos
    acosh asin asinh atan atanh cos cosh sin sinh tan tanh deg rad pi start end
    """
)
# Keywords; after the first six, a parenthesised list holds label names, not metrics.
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = LABEL_LIST_KEYWORDS | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}

TOKEN = re.compile(
    r"""
      (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<comment>\#[^\n]*)
    | (?P<variable>\$\{[^}]*\}|\$\w+)      # Grafana's $__rate_interval, ${var}
    | (?P<number>\d[\w.]*)                # 0.95, 1e3, 5m, 0x1f: never a name
    | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE,
)


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects: identifiers that are not functions, keywords, label
    names (in `{...}` or a `by (...)` list), durations (`[...]`) or Grafana variables."""
    tokens = [
        (m.lastgroup, m.group())
        for m in TOKEN.finditer(expr)
        if m.lastgroup not in ("space", "comment")
    ]
    names: set[str] = set()
    braces = brackets = parens = 0
    label_list = False
    for i, (kind, text) in enumerate(tokens):
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "other":
            braces += {"{": 1, "}": -1}.get(text, 0)
            brackets += {"[": 1, "]": -1}.get(text, 0)
            parens += {"(": 1, ")": -1}.get(text, 0)
            if text == ")" and label_list:
                label_list = False
            continue
        if kind != "name" or braces or brackets or label_list:
            if kind == "name" and braces and text == "__name__":
                raise ValueError(f"name the metric before its braces, not as __name__: {expr}")
            continue
        if text.lower() in KEYWORDS:
            label_list = text.lower() in LABEL_LIST_KEYWORDS and following == "("
        elif following.lower() in ("by", "without"):
            if text not in AGGREGATIONS:
                raise ValueError(f"{text} is no PromQL aggregation: {expr}")
        elif following == "(":
            if text not in FUNCTIONS:
                raise ValueError(f"{text}() is no PromQL function: {expr}")
        else:
            names.add(text)
    if braces or brackets or parens:
        raise ValueError(f"unbalanced braces, brackets or parentheses: {expr}")
    return names


def test_metric_names_are_the_selected_series_and_nothing_else() -> None:
    expr = """
        histogram_quantile(0.95, sum by (le, route) (
          rate(ordermill_http_request_duration_seconds_bucket{route!="/metrics", status=~"5.."}
               [$__rate_interval])))  # a comment naming not_a_metric
        / on (instance) group_left (job) max without (le) (temporal_num_pollers offset 5m)
        > bool 1e3 and ignoring(x) up_recorded:ratio_5m[${__range}:1m] or vector(0)
    """
    assert metric_names(expr) == {
        "ordermill_http_request_duration_seconds_bucket",
        "temporal_num_pollers",
        "up_recorded:ratio_5m",
    }
    # A label value that looks like a route template, braces and all, is a string.
    assert metric_names('sum(x_total{route="/orders/{order_id}"})') == {"x_total"}
    assert metric_names("sum by (status) (rate(ordermill_orders_finished_total[5m]))") == {
        "ordermill_orders_finished_total"
    }


@pytest.mark.parametrize(
    "expr",
    [
        "rat(ordermill_orders_placed_total[5m])",
        "summ by (le) (x_bucket)",
        '{__name__="x"}',
        "sum(x{a='b'}",
        "rate(x[5m]",
    ],
)
def test_a_query_that_cannot_be_read_is_refused_rather_than_skipped(expr: str) -> None:
    with pytest.raises(ValueError):
        metric_names(expr)


# ---- the dashboards ----------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def queries(node: Any) -> Iterator[str]:
    """Every `expr` anywhere in a dashboard: panels, rows' panels, targets."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr":
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def dashboard_metrics() -> dict[str, set[str]]:
    """Each metric name the dashboards read, with the titles of the panels that read it."""
    found: dict[str, set[str]] = {}
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            for expr in queries(panel.get("targets", [])):
                for name in metric_names(expr):
                    found.setdefault(name, set()).add(f"{path.name}: {panel['title']}")
    return found


def prometheus_datasource_uid() -> str:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/ordermill.yaml").read_text())
    (uid,) = [d["uid"] for d in provisioned["datasources"] if d["type"] == "prometheus"]
    return str(uid)


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    uid = prometheus_datasource_uid()
    assert DASHBOARDS, "no dashboard under deploy/grafana/dashboards"
    for path in DASHBOARDS:
        dashboard = load(path)
        # Template variables' queries are not read by metric_names: none until they are.
        assert dashboard["templating"]["list"] == [], path.name
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["targets"], (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": uid}
                assert target["expr"].strip(), (path.name, panel["title"])
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}


def test_the_dashboard_charts_what_operators_asked_for() -> None:
    """Orders placed and finished by status, stage latency, backlog, payments, holds, and
    the workers' CPU by step."""
    charted = dashboard_metrics().keys()
    assert {
        "ordermill_orders_placed_total",
        "ordermill_orders_finished_total",
        "ordermill_stage_duration_seconds_bucket",
        "temporal_workflow_task_schedule_to_start_latency_seconds_bucket",
        "temporal_activity_schedule_to_start_latency_seconds_bucket",
        "ordermill_payments_total",
        "ordermill_holds_placed_total",
        "ordermill_holds_resolved_total",
        "ordermill_activity_cpu_seconds_sum",
    } <= charted


# ---- what a live API and a live worker export --------------------------------------------------


def sample_names(exposition: str) -> set[str]:
    """The series names of a /metrics body: histograms as their _bucket, _sum and _count."""
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


@pytest.fixture(scope="module")
async def api_exports(e2e_stack: E2EStack) -> set[str]:
    """The API's series after an order is placed and a carrier webhook received; read with
    the operator key, as Prometheus reads it in production."""
    settings = e2e_stack.settings.model_copy(
        update={"api_keys": DEV_API_KEYS, "metrics_auth": "operator"}
    )
    app = create_app(settings, temporal_client=e2e_stack.client, engine=e2e_stack.engine)
    async with app.router.lifespan_context(app), http_client(app, OPERATOR_KEY) as api:
        await place(api)
        event = carrier_event(orphan_shipment(e2e_stack.engine), "in_transit")
        answer = await post_event(api, event, e2e_stack.settings.webhook_secret)
        assert answer.status_code == 200, answer.text
        response = await api.get("/metrics")
        assert response.status_code == 200, response.text
    return sample_names(response.text)


@pytest.fixture(scope="module")
async def worker_exports(
    time_skipping_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> set[str]:
    """The worker's series (the SDK's and ordermill's) after orders that complete, are
    declined, and are held for review and rejected: payments, holds and every final stage."""
    address = f"127.0.0.1:{free_port()}"
    runtime = metrics_runtime(address)
    assert runtime is not None
    client = await Client.connect(
        time_skipping_env.client.service_client.config.target_host,
        namespace=time_skipping_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    fakes = FakeOrderSystems()
    async with fake_worker(client, fakes) as task_queue:
        orders = [
            OrderUnderTest(env=time_skipping_env, fakes=fakes, task_queue=task_queue)
            for _ in range(3)
        ]
        completed, declined, reviewed = orders
        await completed.start()
        await declined.start(token="tok_chargeDeclined")
        await reviewed.start({"BOOK-FIRST-EDITION": 1})  # large enough for a risk review
        await completed.wait_for(OrderStatus.SHIPPED)
        await completed.carrier(CarrierStatus.DELIVERED, "evt-1")
        await reviewed.hold("risk_review")
        await reviewed.resolve("risk_review", HoldResolution.REJECTED, "card testing pattern")
        finals = [(await order.result()).status for order in orders]
        assert finals == [
            OrderStatus.COMPLETED,
            OrderStatus.PAYMENT_DECLINED,
            OrderStatus.CANCELLED,
        ]
    await reconcile_a_shelf_off_by_one(client, runtime, tmp_path_factory.mktemp("dashboards"))
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{address}/metrics")
    return sample_names(response.text)


async def reconcile_a_shelf_off_by_one(client: Client, runtime: Runtime, data_dir: Path) -> None:
    """A reconciliation on the worker's runtime that finds discrepancies, so its metrics exist,
    and, through the real activities and email sender, the CPU of each step and delivery.
    A fresh database has no open orders, so it makes no visibility query (which the
    time-skipping server does not answer)."""
    settings = Settings(data_dir=data_dir)
    engine = init_database(settings.effective_database_url)
    with Session(engine) as session:
        session.execute(update(Stock).where(col(Stock.sku) == "BOOK-DUNE").values(on_hand=1))
        session.commit()
    task_queue = new_id("reconcile")
    sender = build_email_sender(settings, engine, runtime.metric_meter)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[ReconcileWorkflow],
            activities=build_activities(settings, engine, client, sender),
            activity_executor=executor,
            interceptors=[ActivityCpuInterceptor()],
        ):
            outcome = await client.execute_workflow(
                ReconcileWorkflow.run, ReconcileInput(), id=task_queue, task_queue=task_queue
            )
    sender.close()
    engine.dispose()
    assert outcome.found == {"stock_on_hand_mismatch": 2}  # both warehouses' Dune


def test_every_dashboard_query_names_a_metric_a_live_api_or_worker_exports(
    api_exports: set[str], worker_exports: set[str]
) -> None:
    charted = dashboard_metrics()
    missing = {name: sorted(titles) for name, titles in charted.items()}
    for name in api_exports | worker_exports:
        missing.pop(name, None)
    assert not missing, f"charted but exported by neither the API nor the worker: {missing}"
