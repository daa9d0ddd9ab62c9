"""The FastAPI app: assembles the routers; the lifespan opens the process's one Temporal client
and one database engine.

Run it with `uvicorn api.main:app`. Tests (and anything embedding the API) call
`create_app(settings, temporal_client=..., engine=...)` to hand in a client and engine they
own; the lifespan then uses those and leaves them open.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from sqlalchemy import Engine
from temporalio.client import Client

from api.auth import Authenticated, Keyring, OrderAccess
from api.middleware import LimitRequestBody, PathCors
from api.problems import install_problem_handlers
from api.routes import (
    codec,
    customer_service,
    customers,
    downloads,
    health,
    orders,
    products,
    webhooks,
)
from database import init_database
from encryption import codec_from_settings
from settings import Settings
from temporal_client import connect_temporal

log = logging.getLogger("ordermill.api")

DESCRIPTION = """
Place and follow orders; each order is one durable Temporal workflow.

* Send your API key as `Authorization: Bearer <key>` (the **Authorize** button below). A
  `client` key sees and acts on the orders it placed; an `operator` key on every order.
* `POST /orders` answers **202** at once; follow `Location` to watch the order move.
* Send an `Idempotency-Key` header to make retries safe.
* Errors are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) problem documents; request
  bodies are limited to 64 KiB.
* Carriers post signed tracking events to `/webhooks/carrier` (HMAC-signed, no API key).
* Operators decode encrypted payloads in the Temporal UI through the codec server at `/codec`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    temporal_client: Client | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    settings = settings or Settings()

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
            init_database, settings.effective_database_url
        )
        try:
            app.state.temporal_client = temporal_client or await connect_temporal(settings)
            log.info(
                "API connected to Temporal at %s (namespace %s)",
                settings.temporal_address,
                settings.temporal_namespace,
            )
            yield
        finally:
            if own_engine:
                app.state.engine.dispose()

    app = FastAPI(
        title="ordermill",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # `/orders/%2F` is `/orders//`: answer 404 rather than redirect a client to `/orders`.
        redirect_slashes=False,
    )
    # Innermost first: the body limit answers inside the catch-all, CORS for /codec outside it.
    app.add_middleware(LimitRequestBody, overrides={codec.PREFIX: codec.MAX_CODEC_BODY_BYTES})
    install_problem_handlers(app)
    app.add_middleware(PathCors, prefix=codec.PREFIX, origins=settings.codec_origins)

    # Every order route needs a key; a client reaches only its own orders (404 otherwise).
    app.include_router(orders.router, dependencies=[Authenticated, OrderAccess])
    app.include_router(customer_service.router, dependencies=[Authenticated, OrderAccess])
    app.include_router(products.router, dependencies=[Authenticated])
    app.include_router(customers.router, dependencies=[Authenticated])
    app.include_router(codec.router)  # operator key or codec session: see api.routes.codec
    # Public: carriers sign their webhooks (HMAC); health checks; the docs.
    app.include_router(webhooks.router)
    app.include_router(downloads.router)  # the link's signature is the credential
    app.include_router(health.router)
    return app


app = create_app()
