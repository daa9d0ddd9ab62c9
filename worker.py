"""The ordermill worker: builds each outside system's client from settings and runs the orders.

Run it with `python worker.py` (or `make worker`); it stops cleanly on SIGINT and SIGTERM,
letting running activities finish within the graceful shutdown timeout.
"""

import asyncio
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities import cpu
from activities.customers import CustomerActivities
from activities.downloads import DownloadActivities, DownloadLinks
from activities.email_sender import EmailSender
from activities.inventory import InventoryActivities
from activities.notifications import (
    Mailer,
    NotificationActivities,
    Notifier,
    OutboxNotifier,
    SmtpNotifier,
)
from activities.payments import PaymentActivities, SimulatedCardProcessor
from activities.read_model import ReadModelActivities
from activities.reconcile import ReconcileActivities
from activities.shipping import ShippingActivities, SimulatedCarrier
from activities.tracking_links import TrackingLinks
from activities.warehouse import WarehouseActivities
from database import SchemaNotCurrent, open_database
from models.wire import TASK_QUEUE
from settings import Settings
from temporal_client import TemporalUnreachable, connect_temporal
from tracing import WORKER_SERVICE, tracer_provider
from workflows import metrics
from workflows.order import OrderWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.stock_receipt import StockReceiptWorkflow

log = logging.getLogger("ordermill.worker")


def build_notifier(settings: Settings) -> Notifier:
    if settings.smtp_host:
        return SmtpNotifier(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )
    return OutboxNotifier(settings.outbox_dir)


def build_email_sender(
    settings: Settings, engine: Engine, meter: MetricMeter = MetricMeter.noop
) -> EmailSender:
    return EmailSender(
        engine, build_notifier(settings).send, lease=settings.email_send_lease, meter=meter
    )


def build_activities(
    settings: Settings, engine: Engine, client: Client, sender: EmailSender | None = None
) -> list[Callable[..., Any]]:
    """Every activity of the order and the reconciliation, bound to the real (or simulated)
    outside systems; the emails they record go out through `sender` (one of its own when not
    given). The reconciliation reads order workflows' visibility through `client`."""
    sender = sender or build_email_sender(settings, engine)
    customers = CustomerActivities(engine)
    inventory = InventoryActivities(engine)
    payments = PaymentActivities(
        SimulatedCardProcessor(engine, auth_validity=settings.auth_validity)
    )
    warehouse = WarehouseActivities(settings.fulfillment_delay)
    shipping = ShippingActivities(SimulatedCarrier(engine))
    mailer = Mailer(
        sender=settings.mail_from,
        links=DownloadLinks(
            settings.public_base_url, settings.download_secret, ttl=settings.download_link_ttl
        ),
        support_mailbox=settings.support_email,
        tracking=TrackingLinks(
            settings.public_base_url, settings.tracking_secret, settings.tracking_link_ttl
        ),
    )
    notifications = NotificationActivities(
        mailer, engine, sender, support_mailbox=settings.support_email
    )
    downloads = DownloadActivities(engine)
    # An order's emails are recorded with the change that triggers them, then sent by `sender`.
    read_model = ReadModelActivities(engine, mailer, sender)
    reconcile = ReconcileActivities(
        engine, client, mailer, sender, public_base_url=settings.public_base_url
    )
    return [
        customers.verify_customer,
        inventory.reserve_stock,
        inventory.release_stock,
        inventory.commit_stock,
        inventory.restock,
        inventory.receive_stock,
        payments.authorize_payment,
        payments.capture_payment,
        payments.void_payment,
        payments.refund_payment,
        warehouse.pick_and_pack,
        shipping.book_shipment,
        notifications.notify_support,
        downloads.revoke_downloads,
        read_model.record_order,
        reconcile.begin,
        reconcile.check_payments,
        reconcile.check_stock,
        reconcile.check_orders,
        reconcile.finish,
    ]


def build_worker(
    client: Client,
    settings: Settings,
    engine: Engine,
    executor: ThreadPoolExecutor,
    sender: EmailSender | None = None,
) -> Worker:
    return Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[OrderWorkflow, StockReceiptWorkflow, ReconcileWorkflow],
        activities=build_activities(settings, engine, client, sender),
        activity_executor=executor,
        max_concurrent_activities=settings.activity_threads,
        max_concurrent_local_activities=settings.activity_threads,
        max_cached_workflows=settings.workflow_cache_size,
        interceptors=[cpu.ActivityCpuInterceptor()],
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


def metrics_runtime(address: str | None) -> Runtime | None:
    """A runtime serving the SDK's metrics, and ordermill's through the same meter, on
    `address`; None (the default runtime, no endpoint) when unset."""
    if address is None:
        return None
    prometheus = PrometheusConfig(
        bind_address=address,
        counters_total_suffix=True,
        unit_suffix=True,
        durations_as_seconds=True,
        histogram_bucket_overrides={
            metrics.STAGE_DURATION: list(metrics.STAGE_BUCKETS_SECONDS),
            cpu.ACTIVITY_CPU: list(cpu.CPU_BUCKETS_SECONDS),
            cpu.EMAIL_CPU: list(cpu.CPU_BUCKETS_SECONDS),
        },
    )
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


async def run_worker(settings: Settings) -> None:
    settings.check_production_ready()
    engine = open_database(settings.effective_database_url)  # never changes the schema
    provider = tracer_provider(settings, WORKER_SERVICE)
    runtime = metrics_runtime(settings.worker_metrics_address)
    client = await connect_temporal(
        settings,
        runtime,
        tracer_provider=provider,
        wait=settings.temporal_connect_timeout,
    )
    if settings.worker_metrics_address:
        log.info("worker metrics at http://%s/metrics", settings.worker_metrics_address)
    if provider is not None:
        log.info("worker traces to %s", settings.otel_exporter_otlp_endpoint)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    sender = build_email_sender(
        settings, engine, runtime.metric_meter if runtime else MetricMeter.noop
    )
    sender.start()  # sends at once what an earlier worker recorded and did not send
    with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
        worker = build_worker(client, settings, engine, executor, sender)
        log.info(
            "worker polling task queue %r on %s (namespace %s)",
            TASK_QUEUE,
            settings.temporal_address,
            settings.temporal_namespace,
        )
        async with worker:
            await stop.wait()
            log.info("shutting down: finishing running activities")
    sender.close()
    engine.dispose()
    if provider is not None:
        await asyncio.to_thread(provider.shutdown)  # sends the spans still batched
    log.info("worker stopped")


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Milestone lines name their order; the SDK's dict of workflow details would double them.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema check's chatter
    code = 0
    try:
        asyncio.run(run_worker(Settings()))
    except SchemaNotCurrent as err:
        log.error("worker not started: %s", err)
        code = 2
    except TemporalUnreachable as err:
        log.error("worker not started: %s", err)
        code = 1
    except Exception:  # a bug of ours, or settings that do not parse: show where
        traceback.print_exc()
        code = 1
    # A process that used a Temporal client can abort at interpreter exit (sdk-python #300,
    # "Fatal Python error: PyGILState_Release"), turning a clean stop or a clear refusal into
    # SIGABRT: leave without running the interpreter's exit, once the logs are out.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
