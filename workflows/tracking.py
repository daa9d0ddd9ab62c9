"""Carrier events to the parcel that owns them, by tracking number.

An order tracks its outbound parcels, its return labels and its exchanges the same way. An
event can beat the booking's reply (the carrier knows the number first): it waits until the
parcel is booked, and past a bound such early events are dropped rather than kept forever.
"""

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RawValue

from models.shipments import CarrierEvent
from workflows.journal import Journal
from workflows.parcel import Parcel

MAX_UNROUTED_EVENTS = 50
# Unreadable events noted on the timeline; past it they are dropped unnoted, so nobody who
# can reach the frontend can grow an order's history without bound.
MAX_NOTED_UNREADABLE = 10


class CarrierEvents:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._parcels: dict[str, Parcel] = {}
        self._seen: set[tuple[str, str]] = set()
        self._unrouted: list[CarrierEvent] = []
        self._unreadable = 0

    def read(self, raw: RawValue) -> CarrierEvent | None:
        """The event, or None for one that cannot be read (a naive time, a missing field):
        noted on the timeline and ignored, never a failed workflow task."""
        try:
            event: CarrierEvent = workflow.payload_converter().from_payload(
                raw.payload, CarrierEvent
            )
        except Exception as err:  # the converter's errors are not one type
            self._unreadable += 1
            if self._unreadable <= MAX_NOTED_UNREADABLE:
                self._journal.append("carrier_event_unreadable", _why(err))
            return None
        return event

    @property
    def noting_unreadable(self) -> bool:
        return self._unreadable <= MAX_NOTED_UNREADABLE

    def track(self, parcel: Parcel) -> None:
        """Route the parcel's tracking number to it, with any events that came before."""
        tracking = parcel.shipment.tracking_number
        assert tracking is not None
        self._parcels[tracking] = parcel
        early = [e for e in self._unrouted if e.tracking_number == tracking]
        self._unrouted = [e for e in self._unrouted if e.tracking_number != tracking]
        for event in early:
            self._apply(parcel, event)

    def receive(self, event: CarrierEvent) -> Parcel | None:
        """Apply a new event; the parcel whose change is still to be recorded, if any.

        None for a duplicate (the same tracking number and event id), an event kept for later,
        and an event that settled a parcel someone waits for: that flow records the outcome.
        """
        key = (event.tracking_number, event.event_id)
        if key in self._seen:
            return None
        self._seen.add(key)
        parcel = self._parcels.get(event.tracking_number)
        if parcel is None:
            if len(self._unrouted) < MAX_UNROUTED_EVENTS:
                self._unrouted.append(event)
            return None
        settled = self._apply(parcel, event)
        return None if settled and parcel.awaited else parcel

    def _apply(self, parcel: Parcel, event: CarrierEvent) -> bool:
        settled = parcel.apply(event)
        detail = f"{parcel.shipment_id} {event.tracking_number}"
        self._journal.append(
            f"carrier_{event.status.value}",
            f"{detail}: {event.description}" if event.description else detail,
        )
        return settled


def _why(err: Exception) -> str:
    """Which fields were wrong and how, without the values (they are not ours to log)."""
    if isinstance(err, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in err.errors()
        )[:300]
    return type(err).__name__
