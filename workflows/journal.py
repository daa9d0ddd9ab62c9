"""The order's journal: its view, its timeline, and what operators and the read model see.

Every change goes through here. A change is recorded with one local activity (the read-model
row, its timeline and the email the change triggers, in one transaction), summarised in plain
words so the order's history in the Temporal UI reads as its story.
"""

from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import FailureError

from activities.read_model import ReadModelActivities
from models.activities import (
    SUPPORT_EMAILS,
    EmailKind,
    OrderEmail,
    RecordOrderInput,
    VerifiedCustomer,
)
from models.holds import HoldCode, HoldResolution, HoldView
from models.orders import OrderStatus, OrderView, TimelineEntry, money, tracking_numbers
from models.wire import CUSTOMER_ID, ORDER_STATUS
from workflows import metrics, policies


class Journal:
    def __init__(self, view: OrderView) -> None:
        self.view = view
        self.customer: VerifiedCustomer | None = None
        self._version = 0
        self._stage_since = workflow.now()  # when the order entered its current status
        # Set by the holds: a record that fails for good waits for an operator's decision.
        self.hold_for: Callable[[HoldCode, str], Awaitable[HoldView]] | None = None

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
        guarded: bool = True,
    ) -> None:
        if status is not self.view.status:
            now = workflow.now()
            metrics.stage_left(self.view.status, now - self._stage_since)
            self._stage_since = now
        self.view.status = status
        # One line per milestone in the worker's log (never during replay); no free text,
        # which may be a customer's.
        workflow.logger.info("order %s %s (%s)", self.view.order_id, status.value, event)
        updates = [ORDER_STATUS.value_set(status.value)]
        # The API starts every order with its customer set; an order started elsewhere (the
        # CLI) gets it with its first change.
        if workflow.info().typed_search_attributes.get(CUSTOMER_ID) is None:
            updates.append(CUSTOMER_ID.value_set(self.view.customer_id))
        workflow.upsert_search_attributes(updates)
        await self.note(
            event, detail, summary=summary, email=email, reference=reference, guarded=guarded
        )

    async def note(
        self,
        event: str,
        detail: str = "",
        *,
        summary: str,
        email: EmailKind | None = None,
        reference: str | None = None,
        guarded: bool = True,
    ) -> None:
        self.append(event, detail)
        await self.record(summary, email=email, reference=reference, guarded=guarded)

    async def record(
        self,
        summary: str,
        *,
        email: EmailKind | None = None,
        reference: str | None = None,
        guarded: bool = True,
    ) -> None:
        """Record the order as it stands now, with the email this change sends.

        A record that fails for good holds the order (`guarded`); rejected, it is skipped: the
        next record carries the whole order anyway. A hold's own records are not guarded, or a
        database that is down would hold the order again while it places the first hold.
        """
        self._publish_details()
        message = self._email(email, reference) if email is not None else None
        if message is not None:
            summary += f" · email: {email}"
        scrub = False
        while True:
            # A fresh version for each attempt: the hold placed meanwhile was recorded too.
            self._version += 1
            try:
                await policies.local(
                    policies.DATABASE,
                    ReadModelActivities.record_order,
                    RecordOrderInput(
                        order=self.view, version=self._version, email=message, scrub=scrub
                    ),
                    summary,
                )
                return
            except FailureError as err:
                code = policies.failure_code(err)
                if code is None:
                    raise
                if not guarded or self.hold_for is None:
                    workflow.logger.warning("not recorded (%s): %s", summary, err)
                    return
                hold = await self.hold_for(code, f"Recording '{summary}': {err}")
                if hold.resolution is HoldResolution.REJECTED:
                    return
                scrub = code is HoldCode.DATA_REJECTED

    def _email(self, kind: EmailKind, reference: str | None) -> OrderEmail | None:
        key = f"{self.view.order_id}:{kind.value}" + (f":{reference}" if reference else "")
        if kind in SUPPORT_EMAILS:
            return OrderEmail(
                idempotency_key=key, kind=kind, to=None, customer_name="", reference=reference
            )
        customer = self.customer
        if customer is None:  # rejected before the customer was known: nobody to write to
            return None
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
        # What an operator opening a held order in the UI needs first: what it waits for.
        parts += [f"hold `{h.hold_id}`: {h.detail}" for h in view.holds if h.resolution is None]
        # The UI renders details as Markdown with math: two amounts would become a formula.
        workflow.set_current_details(" · ".join(parts).replace("$", "\\$"))
