"""The API's Prometheus metrics: requests by route template and status, their latency, orders
placed and carrier webhook receipts by outcome. One registry per app, so each app (and test)
counts its own; served by GET /metrics (api.routes.metrics).

Labels stay bounded: the route is the matched template (`/orders/{order_id}`), never the
path, and a request no route matched is `unmatched`.
"""

import time
from typing import Annotated

from fastapi import Depends
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ordermill_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ordermill_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ["method", "route"],
            registry=self.registry,
        )
        self.orders_placed = Counter(
            "ordermill_orders_placed",
            "Orders placed (their workflow started)",
            registry=self.registry,
        )
        self.webhook_receipts = Counter(
            "ordermill_webhook_receipts",
            "Signed carrier events received, by outcome",
            ["outcome"],
            registry=self.registry,
        )


def api_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


ApiMetricsDep = Annotated[ApiMetrics, Depends(api_metrics)]


class RecordRequests:
    """Outermost middleware: every answer counted once, with the route FastAPI matched."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler still answers 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
