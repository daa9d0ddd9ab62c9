"""Holds: where ordermill cannot decide alone, the order waits for an operator.

A step that fails for good (a declined capture, a refused refund, an outside system down past
its retry bound, data the database refuses) puts a hold on the order instead of failing its
workflow. Before the first parcel is handed over the order stops (`on_hold`); after it, the
order keeps its status and only that step waits. The operator releases the hold (the step runs
again) or rejects it (the step is given up, as the order's stage allows).
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from models.activities import EmailKind
from models.holds import HoldCode, HoldDecision, HoldResolution, HoldView
from models.orders import OrderStatus, OrderView
from models.wire import ORDER_HOLDS
from workflows import metrics
from workflows.journal import Journal
from workflows.policies import failure_code

T = TypeVar("T")


class HoldRejected(Exception):
    """The operator gave the step up; the caller does what its stage allows instead."""

    def __init__(self, hold: HoldView) -> None:
        # One line within a cancel's bound: it becomes the order's cancel reason. A hold that
        # ran out of time says only why (`review_timeout`).
        timed_out = hold.reason or ""
        reason = timed_out if hold.timed_out else f"{hold.hold_id} rejected: {hold.reason}"
        self.reason = reason[:200]
        super().__init__(self.reason)
        self.hold = hold


def held_status(codes: list[HoldCode]) -> OrderStatus | None:
    """The status of an order stopped by these open holds: a backorder alone is
    `backordered`; anything else an operator must decide wins (`on_hold`)."""
    if not codes:
        return None
    if all(code is HoldCode.BACKORDER for code in codes):
        return OrderStatus.BACKORDERED
    return OrderStatus.ON_HOLD


# Holds nobody decides by hand: a backorder is released by its stock arriving.
RELEASED_BY_ORDER = frozenset({HoldCode.BACKORDER})
# Holds the support mailbox is not told of: nobody needs to act on them.
SILENT = frozenset({HoldCode.BACKORDER})


def _message(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) and err.cause else err
    return getattr(cause, "message", None) or str(cause) or type(cause).__name__


class Holds:
    def __init__(self, journal: Journal, handed_over: Callable[[], bool]) -> None:
        self._journal = journal
        self._handed_over = handed_over  # after the first hand-over a hold stops nothing
        self._resume: OrderStatus | None = None  # the status a stopped order returns to
        self._stopping: dict[str, HoldCode] = {}  # open holds placed before the hand-over
        self._recorded: set[str] = set()  # holds whose decision is in the read model
        # Called as each hold starts its wait: the money keeps the authorization alive.
        self.on_wait: Callable[[], None] | None = None
        journal.hold_for = self.place

    @property
    def handed_over(self) -> bool:
        return self._handed_over()

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

    async def place(
        self,
        code: HoldCode,
        detail: str,
        *,
        decide_within: timedelta | None = None,
        timeout_reason: str | None = None,
    ) -> HoldView:
        """Hold the order until an operator decides, or `decide_within` passes and rejects it with
        `timeout_reason`; the decided hold."""
        view = self._journal.view
        earlier = sum(1 for h in view.holds if h.code is code)
        hold = HoldView(
            hold_id=code.value if earlier == 0 else f"{code.value}-{earlier + 1}",
            code=code,
            detail=detail[:500],
            placed_at=workflow.now(),
            expires_at=workflow.now() + decide_within if decide_within is not None else None,
        )
        view.holds.append(hold)
        self._publish()
        metrics.hold_placed(code)
        if code not in RELEASED_BY_ORDER:
            workflow.logger.warning(
                "order %s on hold %s: an operator decides", view.order_id, hold.hold_id
            )
        summary = f"On hold ({hold.hold_id}): {hold.detail}"
        email = None if code in SILENT else EmailKind.HOLD_PLACED
        if not self._handed_over():
            self._stopping[hold.hold_id] = code
        await self._show(
            "hold_placed", f"{hold.hold_id}: {hold.detail}", summary, email, hold.hold_id
        )
        if self.on_wait is not None:
            self.on_wait()
        try:
            await workflow.wait_condition(
                lambda: hold.resolution is not None,
                timeout=decide_within,
                timeout_summary=f"{hold.hold_id} decision deadline",
            )
        except TimeoutError:
            hold.resolution, hold.reason, hold.timed_out = (
                HoldResolution.REJECTED,
                timeout_reason,
                True,
            )
        hold.resolved_at = workflow.now()
        metrics.hold_resolved(code, "timed_out" if hold.timed_out else str(hold.resolution))
        self._stopping.pop(hold.hold_id, None)
        self._publish()
        event = f"hold_{hold.resolution}"
        detail = f"{hold.hold_id}: {hold.reason or ''}".rstrip(": ")
        summary = f"Hold {hold.hold_id} {hold.resolution}" + (
            f": {hold.reason}" if hold.reason else ""
        )
        await self._show(event, detail, summary, None, None)
        self._recorded.add(hold.hold_id)
        return hold

    async def _show(
        self, event: str, detail: str, summary: str, email: EmailKind | None, ref: str | None
    ) -> None:
        """Record a hold's change, with the status its stopping holds give the order."""
        view = self._journal.view
        status = held_status(list(self._stopping.values()))
        if status is not None and view.status not in (OrderStatus.ON_HOLD, OrderStatus.BACKORDERED):
            self._resume = view.status
        if status is None and view.status in (OrderStatus.ON_HOLD, OrderStatus.BACKORDERED):
            status = self._resume
        if status is not None and status is not view.status:
            await self._journal.change_status(
                status, event, detail, summary=summary, email=email, reference=ref, guarded=False
            )
        else:
            await self._journal.note(
                event, detail, summary=summary, email=email, reference=ref, guarded=False
            )

    def resolve(self, code: HoldCode, resolution: HoldResolution, reason: str) -> None:
        """Decide the open holds of `code` from within the order (stock arrived, say)."""
        for hold in self.open:
            if hold.code is code:
                hold.resolution, hold.reason = resolution, reason

    def reject_all(self, reason: str) -> None:
        """What waits for an operator waits no more: the order is stopping."""
        for hold in self.open:
            hold.resolution, hold.reason = HoldResolution.REJECTED, reason

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
        if decision.resolution is HoldResolution.RELEASED and hold.code in RELEASED_BY_ORDER:
            raise ApplicationError(
                f"hold {hold.hold_id} is released when its stock arrives; reject it to cancel",
                type="HoldRefused",
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
