"""Keeping an order's card authorization alive while the order waits on a hold.

Card authorizations expire (a week, at most processors). While any hold is open, a background
task replaces the live authorization a margin before it expires: a new one for what the old
still holds, then a void of the old, each on the timeline. A renewal waits for the money calls
in flight, and they for it (Money's gate), so a capture always goes to the live authorization.
A declined renewal of an order that has handed nothing over ends it (payment_declined).
"""

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError

from activities.errors import PAYMENT_DECLINED
from models.orders import AuthorizationStatus, AuthorizationView, Problem
from workflows import policies
from workflows.holds import HoldRejected, Holds
from workflows.journal import Journal

if TYPE_CHECKING:
    from workflows.money import Money


class AuthorizationRenewal:
    def __init__(self, money: "Money", journal: Journal, holds: Holds, margin: timedelta) -> None:
        self._money = money
        self._journal = journal
        self._holds = holds
        self._margin = margin
        self._watcher: asyncio.Task[None] | None = None
        self.renewing = False
        # Set when a renewal was declined: the order cannot keep its payment while it waits.
        self.declined: Problem | None = None

    def watch(self) -> None:
        """A hold started waiting: renew the authorization before it expires, while any does."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._keep_live())

    async def _keep_live(self) -> None:
        money = self._money
        while self._holds.open and self.declined is None:
            live = money.live
            if live is None or live.expires_at is None or money.uncaptured <= 0:
                return
            delay = live.expires_at - self._margin - workflow.now()
            if delay.total_seconds() > 0:
                try:
                    await workflow.wait_condition(
                        lambda live=live: not self._holds.open or money.live is not live,  # type: ignore[misc]
                        timeout=delay,
                        timeout_summary=f"renew {live.authorization_id} before it expires",
                    )
                    continue  # the wait ended, or another authorization took over
                except TimeoutError:
                    pass
            await self._renew(live)

    async def _renew(self, old: AuthorizationView) -> None:
        """A new authorization for what the old one still holds, then a void of the old."""
        money = self._money
        self.renewing = True
        try:
            await workflow.wait_condition(lambda: money.in_flight == 0)
            amount = old.amount - money.captured_on(old.authorization_id)
            if amount <= 0 or old.status is not AuthorizationStatus.LIVE:
                return
            try:
                new = await money.authorize_amount(amount)
            except HoldRejected as rejected:
                self._decline(old, Problem(code="renewal_failed", detail=rejected.reason))
                return
            except ActivityError as err:
                problem = policies.business_problem(err, PAYMENT_DECLINED)
                if problem is None:
                    raise
                self._decline(old, problem)
                return
            self._journal.append(
                "authorization_renewed",
                f"{new.authorization_id} replaces {old.authorization_id}",
            )
            # Never captured from again, whatever the void answers.
            old.status = AuthorizationStatus.VOIDED
            released = await money.void(old, f"Void {old.authorization_id}, replaced by a renewal")
            if released is None:
                # An operator gave the void up: the processor lets it lapse by itself.
                old.status = AuthorizationStatus.EXPIRED
                self._journal.append("authorization_left_to_lapse", old.authorization_id)
            elif old.status is not AuthorizationStatus.EXPIRED:
                old.status = AuthorizationStatus.VOIDED
                self._journal.append("authorization_voided", old.authorization_id)
            await self._journal.record(
                f"Renewed the card authorization: {new.authorization_id} replaces "
                f"{old.authorization_id}"
            )
        finally:
            self.renewing = False

    def _decline(self, old: AuthorizationView, problem: Problem) -> None:
        self.declined = problem
        self._journal.append(
            "authorization_renewal_declined", f"{old.authorization_id}: {problem.detail}"
        )
        if not self._holds.handed_over:
            # Nothing has left: the order cannot be paid for, and ends (payment_declined).
            self._holds.reject_all("the card authorization could not be renewed")
