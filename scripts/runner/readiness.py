"""Waiting for what `make run` started to answer: Temporal, then the API."""

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from models.wire import SEARCH_ATTRIBUTES, search_attribute_type
from runner.output import log
from runner.process import Child
from runner.supervisor import Fatal
from runner.urls import api_url
from settings import Settings
from temporal_client import connect_temporal

TEMPORAL_STARTUP = 60.0
API_STARTUP = 60.0


async def poll(
    what: str,
    probe: Callable[[], Awaitable[bool]],
    *,
    within: float,
    alive: Child | None = None,
    interval: float = 0.25,
) -> None:
    """Wait until `probe()` holds, failing if `alive` exits first or `within` seconds pass."""
    deadline = time.monotonic() + within
    while not await probe():
        if alive is not None and not alive.running:
            raise Fatal(f"{alive.name} exited while waiting for {what}: see its log above")
        if time.monotonic() > deadline:
            raise Fatal(f"{what} did not come up within {within:.0f}s")
        await asyncio.sleep(interval)


async def wait_for_temporal(settings: Settings, server: Child | None) -> Client:
    client: Client | None = None
    last_error = ""

    async def answers() -> bool:
        nonlocal client, last_error
        try:
            client = await connect_temporal(settings)
        except RuntimeError as err:
            last_error = str(err)
            return False
        return True

    try:
        await poll(
            f"Temporal at {settings.temporal_address}",
            answers,
            within=TEMPORAL_STARTUP,
            alive=server,
        )
    except Fatal as err:
        raise Fatal(f"{err} (last error: {last_error})") from None
    assert client is not None
    return client


async def wait_for_api(settings: Settings) -> None:
    url = f"{api_url(settings)}/healthz"
    async with httpx.AsyncClient(timeout=2.0) as http:

        async def healthy() -> bool:
            try:
                return (await http.get(url)).status_code == 200
            except httpx.HTTPError:
                return False

        await poll("the API", healthy, within=API_STARTUP)


async def warn_on_missing_search_attributes(client: Client) -> None:
    """An existing server must have OrderStatus and CustomerId, or orders fail to start."""
    try:
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
    except Exception:  # e.g. an API key without operator rights: nothing we can check
        return
    missing = [key for key in SEARCH_ATTRIBUTES if key.name not in response.custom_attributes]
    if missing:
        flags = " ".join(f"--name {k.name} --type {search_attribute_type(k)}" for k in missing)
        log(
            f"warning: search attribute(s) {', '.join(k.name for k in missing)} "
            "are not registered in namespace "
            f"{client.namespace}; orders cannot start until they are: "
            f"temporal operator search-attribute create --namespace {client.namespace} {flags}"
        )
