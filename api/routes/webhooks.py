"""Carrier tracking webhooks: verify the signature, record the event once, signal the order.

Carriers retry anything but a 2xx for days, so an event we can do nothing more with (seen
before, or its order has closed) is still a 200; only a temporary failure on our side is a 503,
which a retry will get past.

An event is the carrier's own for one parcel: receipts are keyed on carrier, tracking number
and `event_id`, so two parcels (or two carriers) using the same `event_id` each get theirs.
The workflow dedupes per tracking number and `event_id` too, so a retry after a 503 that had
in fact reached the order changes nothing.
"""

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Header, Request
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio.service import RPCError, RPCStatusCode

from api import signatures
from api.deps import EngineDep, SettingsDep, TemporalClientDep
from api.metrics import ApiMetricsDep
from api.order_calls import temporal_unavailable
from api.problems import ApiProblem, field_errors, invalid, not_found, problem_responses
from models.http import CARRIER_EVENT_EXAMPLES, WebhookAck
from models.projection import shipment_event_row
from models.shipments import CarrierEvent
from models.tables import CarrierWebhookReceipt, Shipment, ShipmentEvent
from models.wire import SIGNAL_CARRIER_EVENT, order_workflow_id

log = logging.getLogger("ordermill.api.webhooks")

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

MAX_BODY_BYTES = 64 * 1024


class Outcome(StrEnum):
    PENDING = "pending"  # recorded, not yet passed to the order
    SIGNALLED = "signalled"
    ORDER_CLOSED = "order_closed"


@dataclass(frozen=True)
class Receipt:
    carrier: str
    order_id: str
    duplicate: bool


def _receive(engine: Engine, event: CarrierEvent) -> Receipt | None:
    """Record the event; None for an unknown tracking number.

    A receipt still `pending` (an earlier delivery failed before it reached the order) is not a
    duplicate: that retry must go through.
    """
    with Session(engine) as session:
        shipment = session.get(Shipment, event.tracking_number)
        if shipment is None:
            return None
        key = (shipment.carrier, event.tracking_number, event.event_id)
        receipt = session.get(CarrierWebhookReceipt, key)
        if receipt is None:
            session.add(
                CarrierWebhookReceipt(
                    carrier=shipment.carrier,
                    event_id=event.event_id,
                    tracking_number=event.tracking_number,
                    order_id=shipment.order_id,
                    status=event.status.value,
                    occurred_at=event.occurred_at,
                    outcome=Outcome.PENDING.value,
                )
            )
            try:
                session.commit()
                return Receipt(shipment.carrier, shipment.order_id, duplicate=False)
            except IntegrityError:  # the same event, delivered twice at once
                session.rollback()
                receipt = session.get(CarrierWebhookReceipt, key)
                if receipt is None:
                    raise
        return Receipt(
            receipt.carrier, receipt.order_id, duplicate=receipt.outcome != Outcome.PENDING
        )


def _settle(engine: Engine, receipt: Receipt, event: CarrierEvent, outcome: Outcome) -> None:
    with Session(engine) as session:
        row = session.get(
            CarrierWebhookReceipt, (receipt.carrier, event.tracking_number, event.event_id)
        )
        if row is not None and row.outcome == Outcome.PENDING:
            row.outcome = outcome.value
            session.add(row)
        if outcome is Outcome.ORDER_CLOSED:
            # The order will not record it any more; keep it in the shipment's history ourselves.
            seen = session.exec(
                select(ShipmentEvent).where(
                    ShipmentEvent.tracking_number == event.tracking_number,
                    ShipmentEvent.event_id == event.event_id,
                )
            ).first()
            if seen is None:
                session.add(shipment_event_row(event))
        session.commit()


def _request_body_docs() -> dict[str, Any]:
    """The body is read raw (the signature covers its exact bytes), so document it by hand."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/CarrierEvent"},
                    "examples": CARRIER_EVENT_EXAMPLES,
                }
            },
        }
    }


@router.post(
    "/carrier",
    response_model=WebhookAck,
    summary="Receive a carrier tracking event",
    openapi_extra=_request_body_docs(),
    responses=problem_responses(401, 404, 413, 422, 503),
)
async def carrier_event(
    request: Request,
    metrics: ApiMetricsDep,
    client: TemporalClientDep,
    engine: EngineDep,
    settings: SettingsDep,
    signature: Annotated[
        str | None,
        Header(
            alias=signatures.SIGNATURE_HEADER,
            description='`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`',
        ),
    ] = None,
) -> WebhookAck:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiProblem(413, "payload-too-large", f"bodies are limited to {MAX_BODY_BYTES} bytes")
    try:
        signatures.verify(signature, body, settings.webhook_secrets)
    except signatures.SignatureError as err:
        raise ApiProblem(
            401, "invalid-signature", str(err), title="The webhook signature is not valid"
        ) from None
    try:
        event = CarrierEvent.model_validate_json(body)
    except ValidationError as err:
        raise invalid(field_errors(err.errors())) from None

    receipt = await to_thread.run_sync(_receive, engine, event)
    if receipt is None:
        raise not_found("shipment", f"no shipment has tracking number {event.tracking_number}")
    if receipt.duplicate:
        metrics.webhook_receipts.labels("duplicate").inc()
        return WebhookAck(event_id=event.event_id, outcome="duplicate")

    handle = client.get_workflow_handle(order_workflow_id(receipt.order_id))
    try:
        await handle.signal(SIGNAL_CARRIER_EVENT, event)
        outcome = Outcome.SIGNALLED
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise temporal_unavailable(err) from None  # still pending: the retry will signal
        log.info("order %s is closed; recorded %s only", receipt.order_id, event.event_id)
        outcome = Outcome.ORDER_CLOSED
    await to_thread.run_sync(_settle, engine, receipt, event, outcome)
    metrics.webhook_receipts.labels(outcome.value).inc()
    return WebhookAck(event_id=event.event_id, outcome=outcome.value)
