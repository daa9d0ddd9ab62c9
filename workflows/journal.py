"""The order's journal: its view, its timeline, and what operators and the read model see.

Every change goes through here. A change is recorded with one local activity (the read-model
row, its timeline and the email the change triggers, in one transaction), summarised in plain
words so the order's history in the Temporal UI reads as its story.
"""

from temporalio import workflow

from activities.read_model import ReadModelActivities
from models.activities import EmailKind, OrderEmail, RecordOrderInput, VerifiedCustomer
from models.orders import OrderStatus, OrderView, TimelineEntry, money, tracking_numbers
from models.wire import CUSTOMER_ID, ORDER_STATUS
from workflows import policies


class Journal:
    def __init__(self, view: OrderView) -> None:
        self.view = view
        self.customer: VerifiedCustomer | None = None
        self._version = 0

    def append(self, event: str, detail: str = "") -> None:
        """A timeline entry recorded with the next change (one that follows at once)."""
        now = workflow.now()
        self.view.updated_at = now
        self.view.timeline.append(
            TimelineEntry(at=now, event=event, status=self.view.status, detail=detail)
        )

    async def change_status(
        self,
        status: OrderStatus,
        event: str,
        detail: str,
        *,
        summary: str,
        email: EmailKind | None = None,
        reference: str | None = None,
    ) -> None:
        self.view.status = status
        updates = [ORDER_STATUS.value_set(status.value)]
        # The API starts every order with its customer set; an order started elsewhere (the
        # CLI) gets it with its first change.
        if workflow.info().typed_search_attributes.get(CUSTOMER_ID) is None:
            updates.append(CUSTOMER_ID.value_set(self.view.customer_id))
        workflow.upsert_search_attributes(updates)
        await self.note(event, detail, summary=summary, email=email, reference=reference)

    async def note(
        self,
        event: str,
        detail: str = "",
        *,
        summary: str,
        email: EmailKind | None = None,
        reference: str | None = None,
    ) -> None:
        self.append(event, detail)
        await self.record(summary, email=email, reference=reference)

    async def record(
        self, summary: str, *, email: EmailKind | None = None, reference: str | None = None
    ) -> None:
        self._publish_details()
        self._version += 1
        message = self._email(email, reference) if email is not None else None
        if message is not None:
            summary += f" · email: {email}"
        await policies.local(
            policies.DATABASE,
            ReadModelActivities.record_order,
            RecordOrderInput(order=self.view, version=self._version, email=message),
            summary,
        )

    def _email(self, kind: EmailKind, reference: str | None) -> OrderEmail | None:
        customer = self.customer
        if customer is None:  # rejected before the customer was known: nobody to write to
            return None
        key = f"{self.view.order_id}:{kind.value}" + (f":{reference}" if reference else "")
        return OrderEmail(
            idempotency_key=key,
            kind=kind,
            to=customer.email,
            customer_name=customer.name,
            reference=reference,
        )

    def _publish_details(self) -> None:
        view = self.view
        parts = [f"**{view.status.value}**"]
        if view.totals:
            parts.append(money(view.totals.total, view.totals.currency))
        tracking = tracking_numbers(view)
        if tracking:
            parts.append("tracking " + ", ".join(tracking))
        if view.reason:
            parts.append(f"reason `{view.reason.code}`")
        workflow.set_current_details(" · ".join(parts))
