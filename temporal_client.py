"""Connecting to Temporal, the same way in the worker, the API, the tools and the tests.

Address and namespace come from our settings; TLS, API keys and profiles from Temporal's
standard environment configuration (TEMPORAL_API_KEY, TEMPORAL_TLS_CLIENT_CERT_PATH, ...),
so Temporal Cloud or any cluster needs no code change. With ENCRYPTION_KEY set, every payload
is encrypted (see encryption.py); with a tracer provider, every call is traced (tracing.py).
"""

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


async def connect_temporal(
    settings: Settings,
    runtime: Runtime | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> Client:
    """A client for the settings' namespace; on `runtime` (the worker's, with its metrics)
    when given, else on the SDK's default one. With `tracer_provider`, the client's calls are
    traced, and so are the workflows and activities of a worker built on it."""
    config = ClientConfigProfile.load().to_client_connect_config()
    config["target_host"] = settings.temporal_address
    config["namespace"] = settings.temporal_namespace
    codec = codec_from_settings(
        settings.encryption_key_id, settings.encryption_key, settings.encryption_old_keys
    )
    return await Client.connect(
        **config,
        data_converter=data_converter(codec),
        runtime=runtime,
        interceptors=temporal_interceptors(tracer_provider),
    )


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
