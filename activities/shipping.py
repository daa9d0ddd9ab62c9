"""Shipments through a `Carrier`; the built-in one simulates a parcel carrier."""

import secrets
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity

from models.activities import BookedShipment, BookShipmentInput
from models.tables import Shipment


class Carrier(Protocol):
    name: str

    def book(self, request: BookShipmentInput) -> str:
        """Book a pickup for the parcel; returns the tracking number. Idempotent per key."""
        ...


class SimulatedCarrier:
    """Issues tracking numbers and keeps its shipments in the shipments table.

    Its tracking events arrive later as signed webhooks (see the API), as a real carrier's do.
    """

    name = "simulated-carrier"

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def book(self, request: BookShipmentInput) -> str:
        existing = self._find(request.idempotency_key)
        if existing is not None:
            return existing.tracking_number
        shipment = Shipment(
            tracking_number="OM" + secrets.token_hex(8).upper(),
            idempotency_key=request.idempotency_key,
            order_id=request.order_id,
            carrier=self.name,
            service=request.delivery.value,
        )
        with Session(self._engine) as session:
            session.add(shipment)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                winner = self._find(request.idempotency_key)
                if winner is None:
                    raise
                return winner.tracking_number
            return shipment.tracking_number

    def _find(self, idempotency_key: str) -> Shipment | None:
        with Session(self._engine) as session:
            return session.exec(
                select(Shipment).where(Shipment.idempotency_key == idempotency_key)
            ).first()


class ShippingActivities:
    def __init__(self, carrier: Carrier) -> None:
        self._carrier = carrier

    @activity.defn(name="book_shipment")
    def book_shipment(self, request: BookShipmentInput) -> BookedShipment:
        tracking_number = self._carrier.book(request)
        return BookedShipment(carrier=self._carrier.name, tracking_number=tracking_number)
