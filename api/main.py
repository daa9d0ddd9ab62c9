"""The FastAPI app: assembles the routers; the lifespan opens the process's one Temporal client
and one database engine.

Run it with `uvicorn api.main:app`. It refuses to start on a database that is not at the latest
migration (`python database.py` brings it there). Tests (and anything embedding the API) call
`create_app(settings, temporal_client=..., engine=...)` to hand in a client and engine they
own, and have migrated; the lifespan then uses those as they are and leaves them open. The same
holds for a `tracer_provider` handed in; without one, OTEL_EXPORTER_OTLP_ENDPOINT decides.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import Engine
from temporalio.client import Client

from api import idempotency
from api.auth import Authenticated, Keyring, OrderAccess
from api.metrics import ApiMetrics, RecordRequests
from api.middleware import Allowance, LimitRequestBody, PathCors
from api.pages import console, tracking
from api.pages.rendering import ASSETS
from api.problems import auth_responses, install_problem_handlers
from api.routes import (
    codec,
    customer_service,
    customers,
    downloads,
    health,
    holds,
    metrics,
    orders,
    products,
    reconciliation,
    webhooks,
)
from database import open_database
from encryption import codec_from_settings
from settings import Settings
from temporal_client import connect_temporal
from tracing import API_SERVICE, instrument_api
from tracing import tracer_provider as settings_tracer_provider

log = logging.getLogger("ordermill.api")

DESCRIPTION = """
Place and follow orders; each order is one durable Temporal workflow.

* Send your API key as `Authorization: Bearer <key>` (the **Authorize** button below). A
  `client` key sees and acts on the orders and customers it created; an `operator` key on all.
* `POST /orders` answers **202** at once; follow `Location` to watch the order move.
* Send an `Idempotency-Key` header to make retries safe; returns and refunds require one.
  Keys are your own: no other client's key can collide with yours.
* An action on an order (cancel, return, ...) still running after a few seconds answers
  **202** with `Location`; one Temporal did not take up answers **503**: retry it with the
  same `Idempotency-Key`.
* Errors are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) problem documents; request
  bodies are limited to 64 KiB.
* Carriers post signed tracking events to `/webhooks/carrier` (HMAC-signed, no API key).
* Operators decode encrypted payloads in the Temporal UI through the codec server at `/codec`.
"""

# Who may call each router: an API key, and for order routes a client's own orders only.
_KEYED = [Authenticated]
_KEYED_ORDERS = [Authenticated, OrderAccess]


def routers() -> list[tuple[APIRouter, list[Any]]]:
    """Every router with the dependencies guarding it; a new area is one more line."""
    return [
        (orders.router, _KEYED_ORDERS),
        (customer_service.router, _KEYED_ORDERS),
        (holds.router, _KEYED_ORDERS),  # operators only: see api.routes.holds
        (products.router, _KEYED),
        (customers.router, _KEYED),
        (reconciliation.router, _KEYED),  # operators only: see api.routes.reconciliation
        (codec.router, []),  # operator key or codec session: see api.routes.codec
        (console.router, []),  # HTML; an operator's console session: see api.pages.console
        # Public: carriers sign their webhooks (HMAC); the download link's signature is the
        # credential; health checks.
        (webhooks.router, []),
        (downloads.router, []),
        (health.router, []),
        (metrics.router, []),  # METRICS_AUTH decides: see api.routes.metrics
        (tracking.router, []),  # the signed link is the credential: see api.pages.tracking
    ]


def create_app(
    settings: Settings | None = None,
    *,
    temporal_client: Client | None = None,
    engine: Engine | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    settings = settings or Settings()
    own_provider = tracer_provider is None
    provider = tracer_provider or settings_tracer_provider(settings, API_SERVICE)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.check_production_ready(serving_api=True)
        own_engine = engine is None
        app.state.settings = settings
        app.state.keyring = Keyring(settings.api_key_entries)
        app.state.codec = codec_from_settings(
            settings.encryption_key_id, settings.encryption_key, settings.encryption_old_keys
        )
        app.state.engine = engine or await to_thread.run_sync(
            open_database, settings.effective_database_url
        )
        purger = asyncio.create_task(
            idempotency.purge_periodically(app.state.engine, settings.idempotency_key_ttl)
        )
        try:
            app.state.temporal_client = temporal_client or await connect_temporal(
                settings, tracer_provider=provider
            )
            log.info(
                "API connected to Temporal at %s (namespace %s)",
                settings.temporal_address,
                settings.temporal_namespace,
            )
            if provider is not None:
                log.info("API traces to %s", settings.otel_exporter_otlp_endpoint)
            yield
        finally:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            if own_engine:
                app.state.engine.dispose()
            if own_provider and provider is not None:
                await to_thread.run_sync(provider.shutdown)  # sends the spans still batched

    app = FastAPI(
        title="ordermill",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # `/orders/%2F` is `/orders//`: answer 404 rather than redirect a client to `/orders`.
        redirect_slashes=False,
    )
    # Innermost first: the body limit answers inside the catch-all, CORS for /codec outside it.
    app.add_middleware(
        LimitRequestBody,
        allowances=[
            Allowance(codec.CODEC_PATHS, codec.MAX_CODEC_BODY_BYTES, codec.presents_operator)
        ],
    )
    install_problem_handlers(app)
    app.add_middleware(PathCors, prefix=codec.PREFIX, origins=settings.codec_origins)
    app.state.metrics = ApiMetrics()
    app.add_middleware(RecordRequests, metrics=app.state.metrics)  # outermost: every answer

    for router, dependencies in routers():
        keyed = Authenticated in dependencies
        app.include_router(
            router, dependencies=dependencies, responses=auth_responses() if keyed else None
        )
    app.mount("/assets", StaticFiles(directory=ASSETS), name="assets")  # the pages' stylesheet
    instrument_api(app, provider)  # wraps the whole stack: outermost of all
    return app


app = create_app()
