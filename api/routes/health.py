"""Liveness and readiness, for load balancers and orchestrators."""

import asyncio
import logging
from datetime import timedelta

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from api.deps import EngineDep, TemporalClientDep
from api.problems import problem_response, problem_responses
from models.http import Health, Readiness

log = logging.getLogger("ordermill.api.health")

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = timedelta(seconds=3)


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health()


async def _check_temporal(client: Client) -> str:
    try:
        await asyncio.wait_for(
            client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=CHECK_TIMEOUT),
            CHECK_TIMEOUT.total_seconds(),
        )
        return "ok"
    except Exception as err:  # any failure means "not ready"; say which kind
        log.warning("readiness: Temporal check failed: %r", err)
        return f"unreachable ({type(err).__name__})"


def _select_one(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


async def _check_database(engine: Engine) -> str:
    try:
        await asyncio.wait_for(
            to_thread.run_sync(_select_one, engine, abandon_on_cancel=True),
            CHECK_TIMEOUT.total_seconds(),
        )
        return "ok"
    except Exception as err:
        log.warning("readiness: database check failed: %r", err)
        return f"unreachable ({type(err).__name__})"


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Temporal and the database are reachable",
    responses=problem_responses(503),
)
async def readyz(
    request: Request, client: TemporalClientDep, engine: EngineDep
) -> Readiness | JSONResponse:
    temporal, database = await asyncio.gather(_check_temporal(client), _check_database(engine))
    checks = {"temporal": temporal, "database": database}
    if all(state == "ok" for state in checks.values()):
        return Readiness(status="ready", checks=checks)
    failing = ", ".join(name for name, state in checks.items() if state != "ok")
    return problem_response(
        request,
        503,
        "not-ready",
        "Service Unavailable",
        f"not ready: {failing} unreachable",
        headers={"Retry-After": "5"},
        extensions={"checks": checks},
    )
