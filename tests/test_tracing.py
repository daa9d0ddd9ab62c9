"""Tracing: one order is one trace, from `POST /orders` through every activity; a carrier
webhook's trace reaches the order through its signal; unset, nothing is traced at all.

The API and the worker each get a provider of their own, as two processes would, writing to
one in-memory exporter, and each connects through `connect_temporal`: the interceptor under
test is the one production uses. The worker polls before any request is made and keeps no
workflow in its cache, so its spans find their parents only through Temporal's headers, and a
replayed history adds no span.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.signatures import SIGNATURE_HEADER, sign
from models.orders import OrderStatus
from models.tables import Shipment
from models.wire import ORDER_WORKFLOW, SIGNAL_CARRIER_EVENT, TASK_QUEUE, order_workflow_id
from settings import DEV_API_KEYS, Settings
from temporal_client import connect_temporal
from tests.conftest import eventually, new_id
from tests.fakes import FakeOrderSystems, fake_worker
from tracing import (
    API_SERVICE,
    WORKER_SERVICE,
    temporal_interceptors,
    tracer_provider,
    traces_endpoint,
)
from workflows.order import OrderWorkflow

ORDER = {
    "customer_id": "cus_ada",
    "items": [{"sku": "BOOK-DUNE", "quantity": 1}],
    "delivery": "standard",
    "payment": {"token": "tok_visa"},
}


def in_memory_provider(service: str, exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


class Spans:
    def __init__(self, spans: tuple[ReadableSpan, ...]) -> None:
        self.all = spans

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.all if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"{len(found)} {name!r} among {sorted({s.name for s in self.all})}"
        return found[0]


def service(span: ReadableSpan) -> object:
    return span.resource.attributes[SERVICE_NAME]


def assert_child(span: ReadableSpan, parent: ReadableSpan) -> None:
    """`span` is `parent`'s child in `parent`'s trace (by ids, not by name)."""
    assert span.parent is not None, f"{span.name} has no parent"
    assert span.parent.span_id == parent.context.span_id, f"{span.name} is not {parent.name}'s"
    assert span.context.trace_id == parent.context.trace_id, f"{span.name} left the trace"


async def test_an_order_is_one_trace_from_post_orders_through_every_activity_and_signal(
    time_skipping_env: WorkflowEnvironment, sqlite_engine: Engine, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    settings = Settings(
        data_dir=tmp_path,
        api_keys=DEV_API_KEYS,
        temporal_address=time_skipping_env.client.service_client.config.target_host,
        encryption_key=None,
        otel_exporter_otlp_endpoint=None,
    )
    worker_client = await connect_temporal(
        settings, tracer_provider=in_memory_provider(WORKER_SERVICE, exporter)
    )
    fakes = FakeOrderSystems()
    # The lifespan connects the API's own client, with the provider handed in.
    app = create_app(
        settings, engine=sqlite_engine, tracer_provider=in_memory_provider(API_SERVICE, exporter)
    )
    async with (
        # The API starts orders on the real task queue; this server's other tests use their own.
        fake_worker(worker_client, fakes, task_queue=TASK_QUEUE, max_cached_workflows=0),
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://ordermill.test",
            headers={"Authorization": "Bearer omk_dev_client"},
        ) as api,
    ):
        placed = await api.post("/orders", json=ORDER)
        assert placed.status_code == 202, placed.text
        order_id = placed.json()["order_id"]
        # The test's own polling goes through the untraced environment client.
        handle = time_skipping_env.client.get_workflow_handle_for(
            OrderWorkflow.run, order_workflow_id(order_id)
        )

        async def status() -> OrderStatus:
            return (await handle.query(OrderWorkflow.status)).status

        await eventually(status, lambda s: s is OrderStatus.SHIPPED)
        tracking = f"TRK-{order_id}-SHP-1"  # the fake carrier's number
        with Session(sqlite_engine) as session:  # what the real carrier activity records
            session.add(
                Shipment(
                    tracking_number=tracking,
                    idempotency_key=new_id("ship"),
                    order_id=order_id,
                    carrier="fake-carrier",
                    service="standard",
                )
            )
            session.commit()
        event = {
            "event_id": new_id("evt"),
            "tracking_number": tracking,
            "status": "delivered",
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        body = json.dumps(event).encode()
        hook = await api.post(
            "/webhooks/carrier",
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(body, settings.webhook_secrets),
            },
        )
        assert hook.status_code == 200, hook.text
        assert hook.json()["outcome"] == "signalled"
        await eventually(status, lambda s: s is OrderStatus.DELIVERED)
        # Past the return window the order completes: nothing is left running on the server.
        await time_skipping_env.sleep(settings.return_window + timedelta(days=1))
        assert (await handle.result()).status is OrderStatus.COMPLETED
        assert (await api.get("/healthz")).status_code == 200

    spans = Spans(exporter.get_finished_spans())
    workflow_id = order_workflow_id(order_id)

    post = spans.one("POST /orders")
    assert post.parent is None and post.kind is SpanKind.SERVER
    assert service(post) == API_SERVICE
    assert post.attributes is not None and post.attributes["http.route"] == "/orders"

    start = spans.one(f"StartWorkflow:{ORDER_WORKFLOW}")
    assert_child(start, post)
    assert service(start) == API_SERVICE
    assert start.attributes is not None and start.attributes["temporalWorkflowID"] == workflow_id

    # TracingInterceptor hangs the workflow's spans under the span that started it, the one
    # context its history keeps: RunWorkflow marks the run (no duration), beside its activities.
    run = spans.one(f"RunWorkflow:{ORDER_WORKFLOW}")
    assert_child(run, start)
    assert service(run) == WORKER_SERVICE
    assert_child(spans.one(f"CompleteWorkflow:{ORDER_WORKFLOW}"), start)

    called = {call.name for call in fakes.calls}
    assert {"verify_customer", "authorize_payment", "book_shipment", "capture_payment"} <= called
    for name in called:
        started = spans.named(f"StartActivity:{name}")
        ran = spans.named(f"RunActivity:{name}")
        # One span per attempt, however often the uncached worker replayed the history.
        assert len(ran) == len(fakes.called(name)) == len(started), name
        for activity_start in started:
            assert_child(activity_start, start)
            assert service(activity_start) == WORKER_SERVICE
        by_id = {s.context.span_id: s for s in started}
        for attempt in ran:
            assert attempt.parent is not None and attempt.parent.span_id in by_id, name
            assert_child(attempt, by_id[attempt.parent.span_id])
            assert attempt.kind is SpanKind.SERVER and service(attempt) == WORKER_SERVICE

    # The webhook is a trace of its own, down to the signal it sends; the order's trace
    # records the signal's handling, linked back to that send.
    webhook = spans.one("POST /webhooks/carrier")
    assert webhook.parent is None and webhook.context.trace_id != post.context.trace_id
    signal = spans.one(f"SignalWorkflow:{SIGNAL_CARRIER_EVENT}")
    assert_child(signal, webhook)
    assert service(signal) == API_SERVICE
    handled = spans.one(f"HandleSignal:{SIGNAL_CARRIER_EVENT}")
    assert_child(handled, start)
    assert service(handled) == WORKER_SERVICE
    assert [link.context.span_id for link in handled.links] == [signal.context.span_id]
    assert handled.links[0].context.trace_id == webhook.context.trace_id

    # Every span about the order but the webhook's signal is in the order's trace.
    about_order = [s for s in spans.all if (s.attributes or {}).get("temporalWorkflowID")]
    assert {s.context.trace_id for s in about_order if s is not signal} == {post.context.trace_id}
    # Probes are not traced.
    assert not [s for s in spans.all if "healthz" in s.name]


async def test_without_an_endpoint_nothing_is_traced(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    settings = Settings(
        otel_exporter_otlp_endpoint=None,
        temporal_address=time_skipping_env.client.service_client.config.target_host,
        encryption_key=None,
    )
    assert tracer_provider(settings, API_SERVICE) is None
    assert temporal_interceptors(None) == []
    client = await connect_temporal(settings)
    assert client.config()["interceptors"] == []
    app = create_app(settings)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)


def test_the_endpoint_is_a_base_url_that_needs_a_scheme() -> None:
    for base in ("http://otel-collector:4318", "http://otel-collector:4318/"):
        assert traces_endpoint(base) == "http://otel-collector:4318/v1/traces"
    with pytest.raises(ValidationError, match="otel_exporter_otlp_endpoint"):
        Settings(otel_exporter_otlp_endpoint="otel-collector:4318")


@contextmanager
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A stand-in OTLP/HTTP collector on loopback: its base URL and what was posted to it."""
    received: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()
        server.server_close()


def test_spans_go_to_the_collectors_v1_traces_as_protobuf_named_for_the_process() -> None:
    with collector() as (base, received):
        settings = Settings(otel_exporter_otlp_endpoint=base, otel_service_name=None)
        provider = tracer_provider(settings, WORKER_SERVICE)
        assert provider is not None
        with provider.get_tracer("test").start_as_current_span("probe"):
            pass
        provider.shutdown()  # flushes the batch

    ((path, content_type, body),) = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = request.resource_spans
    names = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert names[SERVICE_NAME] == WORKER_SERVICE
    assert [s.name for scope in resource_spans.scope_spans for s in scope.spans] == ["probe"]
