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

from api.problems import install_problem_handlers
from api.routes import customer_service, customers, downloads, health, orders, products, webhooks
from database import init_database
from settings import Settings
from temporal_client import connect_temporal

log = logging.getLogger("ordermill.api")

DESCRIPTION = """
Place and follow orders; each order is one durable Temporal workflow.

* `POST /orders` answers **202** at once; follow `Location` to watch the order move.
* Send an `Idempotency-Key` header to make retries safe.
* Errors are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) problem documents.
* Carriers post signed tracking events to `/webhooks/carrier`.
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
        settings.check_production_ready()
        own_engine = engine is None
        app.state.settings = settings
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
    )
    install_problem_handlers(app)
    app.include_router(orders.router)
    app.include_router(customer_service.router)
    app.include_router(products.router)
    app.include_router(customers.router)
    app.include_router(webhooks.router)
    app.include_router(downloads.router)  # the link's signature is the credential
    app.include_router(health.router)
    return app


app = create_app()
