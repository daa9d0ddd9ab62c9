"""OpenTelemetry traces for the API and the worker, sent over OTLP/HTTP; off unless
OTEL_EXPORTER_OTLP_ENDPOINT is set.

An order's trace starts at the API's `POST /orders` span (FastAPI's instrumentation), goes
through `StartWorkflow:Order` and, in the worker, through the workflow's spans and every
`StartActivity:`/`RunActivity:` pair. Temporal's TracingInterceptor carries the context in
workflow and activity headers, so the trace crosses processes and survives worker restarts.

Off, no provider, interceptor or middleware is made, so an order costs what it did before.
A provider is passed to what it traces rather than set globally: OpenTelemetry allows one
global provider per process, and the tests run an API's and a worker's side by side.
Workflow modules never import this one: workflow code reaches nothing outside the order.
"""

from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from settings import Settings

API_SERVICE = "ordermill-api"
WORKER_SERVICE = "ordermill-worker"
# Probes and scrapes every few seconds would bury the orders' traces.
UNTRACED_URLS = "/healthz,/readyz,/metrics"


def traces_endpoint(base: str) -> str:
    """Where OTLP/HTTP takes traces under a base URL (OpenTelemetry's rule for the variable)."""
    return f"{base.removesuffix('/')}/v1/traces"


def tracer_provider(settings: Settings, service_name: str) -> TracerProvider | None:
    """The process's provider, batching its spans to the collector; None when tracing is off.

    OTEL_SERVICE_NAME replaces `service_name`; the SDK's other variables (OTEL_TRACES_SAMPLER,
    OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_*, ...) apply as usual. Shut it down on exit to send
    what is still batched.
    """
    if settings.otel_exporter_otlp_endpoint is None:
        return None
    resource = Resource.create({SERVICE_NAME: settings.otel_service_name or service_name})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=traces_endpoint(settings.otel_exporter_otlp_endpoint))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def temporal_interceptors(provider: TracerProvider | None) -> list[Interceptor]:
    """For `Client.connect`: a worker on that client traces its workflows and activities too."""
    if provider is None:
        return []
    return [TracingInterceptor(provider.get_tracer("temporalio.contrib.opentelemetry"))]


def instrument_api(app: FastAPI, provider: TracerProvider | None) -> None:
    """A server span per request, current while its route runs (so Temporal calls join it)."""
    if provider is None:
        return
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=UNTRACED_URLS,
        # A span per ASGI message doubles a trace's size and says nothing about the order.
        exclude_spans=["receive", "send"],
    )
