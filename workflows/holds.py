"""Holds: where ordermill cannot decide alone, the order waits for an operator.

A step that fails for good (a declined capture, a refused refund, an outside system down past
its retry bound, data the database refuses) puts a hold on the order instead of failing its
workflow. Before the first parcel is handed over the order stops (`on_hold`); after it, the
order keeps its status and only that step waits. The operator releases the hold (the step runs
again) or rejects it (the step is given up, as the order's stage allows).
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from models.activities import EmailKind
from models.orders import HoldCode, HoldDecision, HoldResolution, HoldView, OrderStatus, OrderView
from models.wire import ORDER_HOLDS
from workflows.journal import Journal
from workflows.policies import failure_code

T = TypeVar("T")


class HoldRejected(Exception):
    """The operator gave the step up; the caller does what its stage allows instead."""

    def __init__(self, hold: HoldView) -> None:
        # One line within a cancel's bound: it becomes the order's cancel reason.
        self.reason = f"{hold.hold_id} rejected: {hold.reason}"[:200]
        super().__init__(self.reason)
        self.hold = hold


def _message(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) and err.cause else err
    return getattr(cause, "message", None) or str(cause) or type(cause).__name__


class Holds:
    def __init__(self, journal: Journal, handed_over: Callable[[], bool]) -> None:
        self._journal = journal
        self._handed_over = handed_over  # after the first hand-over a hold stops nothing
        self._resume: OrderStatus | None = None  # the status a stopped order returns to
        self._recorded: set[str] = set()  # holds whose decision is in the read model
        journal.hold_for = self.place

    @property
    def open(self) -> list[HoldView]:
        return [h for h in self._journal.view.holds if h.resolution is None]

    async def attempt(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        declined: dict[str, HoldCode] | None = None,
        after_hold: Callable[[HoldCode], None] | None = None,
    ) -> T:
        """Run a step until it succeeds; each final failure holds the order for a decision.

        Released: the step runs again. Rejected: HoldRejected. A business failure that is no
        reason to hold (see failure_code) is raised as it came.
        """
        while True:
            try:
                return await call()
            except FailureError as err:
                code = failure_code(err, declined)
                if code is None:
                    raise
                hold = await self.place(code, f"{what}: {_message(err)}")
                if hold.resolution is HoldResolution.REJECTED:
                    raise HoldRejected(hold) from None
                if after_hold is not None:
                    after_hold(code)

    async def place(self, code: HoldCode, detail: str) -> HoldView:
        """Hold the order until an operator decides; the decided hold."""
        view = self._journal.view
        earlier = sum(1 for h in view.holds if h.code is code)
        hold = HoldView(
            hold_id=code.value if earlier == 0 else f"{code.value}-{earlier + 1}",
            code=code,
            detail=detail[:500],
            placed_at=workflow.now(),
        )
        view.holds.append(hold)
        self._publish()
        workflow.logger.warning(
            "order %s on hold %s: an operator decides", view.order_id, hold.hold_id
        )
        summary = f"On hold ({hold.hold_id}): {hold.detail}"
        stops = not self._handed_over()
        if stops and view.status is not OrderStatus.ON_HOLD:
            self._resume = view.status
            await self._journal.change_status(
                OrderStatus.ON_HOLD,
                "hold_placed",
                f"{hold.hold_id}: {hold.detail}",
                summary=summary,
                email=EmailKind.HOLD_PLACED,
                reference=hold.hold_id,
                guarded=False,
            )
        else:
            await self._journal.note(
                "hold_placed",
                f"{hold.hold_id}: {hold.detail}",
                summary=summary,
                email=EmailKind.HOLD_PLACED,
                reference=hold.hold_id,
                guarded=False,
            )
        await workflow.wait_condition(lambda: hold.resolution is not None)
        hold.resolved_at = workflow.now()
        self._publish()
        event = f"hold_{hold.resolution}"
        detail = f"{hold.hold_id}: {hold.reason or ''}".rstrip(": ")
        summary = f"Hold {hold.hold_id} {hold.resolution}" + (
            f": {hold.reason}" if hold.reason else ""
        )
        if view.status is OrderStatus.ON_HOLD and not self.open and self._resume is not None:
            await self._journal.change_status(
                self._resume, event, detail, summary=summary, guarded=False
            )
        else:
            await self._journal.note(event, detail, summary=summary, guarded=False)
        self._recorded.add(hold.hold_id)
        return hold

    def validate(self, decision: HoldDecision) -> None:
        hold = self._find(decision.hold_id)
        if hold is None:
            raise ApplicationError(
                f"order {self._journal.view.order_id} has no hold {decision.hold_id}",
                type="HoldNotFound",
                non_retryable=True,
            )
        if hold.resolution is not None:
            raise ApplicationError(
                f"hold {hold.hold_id} was already {hold.resolution}",
                hold.resolution.value,
                type="HoldResolved",
                non_retryable=True,
            )
        if decision.resolution is HoldResolution.REJECTED and not (decision.reason or "").strip():
            raise ApplicationError(
                "rejecting a hold needs a reason", type="HoldRefused", non_retryable=True
            )

    async def decide(self, decision: HoldDecision) -> OrderView:
        """Apply the decision; answers with the order once the decision is in its read model,
        so a client that reads the order next sees it."""
        hold = self._find(decision.hold_id)
        assert hold is not None  # the validator checked
        hold.resolution = decision.resolution
        hold.reason = decision.reason
        await workflow.wait_condition(lambda: hold.hold_id in self._recorded)
        return self._journal.view

    def _find(self, hold_id: str) -> HoldView | None:
        return next((h for h in self._journal.view.holds if h.hold_id == hold_id), None)

    def _publish(self) -> None:
        workflow.upsert_search_attributes(
            [ORDER_HOLDS.value_set(sorted({h.code.value for h in self.open}))]
        )
