"""Customer service beside returns: operators' goodwill refunds, questions, feedback."""

import contextlib
from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from activities.notifications import NotificationActivities
from models.activities import (
    EmailKind,
    SupportInquiryInput,
)
from models.orders import (
    CAPTURED_STATUSES,
    FeedbackRequest,
    FeedbackView,
    GoodwillRefundRequest,
    InquiryRequest,
    InquiryView,
    PlaceOrderInput,
    RefundKind,
    RefundView,
    money,
)
from workflows import policies, rules
from workflows.holds import HoldRejected, Holds
from workflows.journal import Journal
from workflows.money import Money


class CustomerService:
    def __init__(
        self, journal: Journal, money: Money, holds: Holds, order: PlaceOrderInput
    ) -> None:
        self._journal = journal
        self._money = money
        self._holds = holds
        self._limits = order.limits

    def validate_goodwill_refund(self, request: GoodwillRefundRequest) -> None:
        view = self._journal.view
        if view.status not in CAPTURED_STATUSES:
            refuse("RefundRefused", f"nothing was charged yet; the order is {view.status}")
        left = view.payment.captured - view.payment.refunded
        if request.amount > left:
            refuse("RefundRefused", rules.refund_bound(left))

    async def goodwill_refund(self, request: GoodwillRefundRequest) -> RefundView:
        refund = await self._money.refund(
            request.amount, RefundKind.GOODWILL, request.reason, exact=True
        )
        assert refund is not None
        await self._journal.record(
            f"Refunded {money(refund.amount)} as goodwill ({request.reason})",
            email=EmailKind.REFUND_ISSUED,
            reference=refund.refund_id,
        )
        return refund

    async def ask(self, request: InquiryRequest) -> InquiryView:
        """A customer's question: on the timeline, and to the support mailbox."""
        view = self._journal.view
        inquiry = InquiryView(
            inquiry_id=f"Q-{len(view.inquiries) + 1}", message=request.message, at=workflow.now()
        )
        view.inquiries.append(inquiry)
        await self._journal.note(
            "inquiry",
            f"{inquiry.inquiry_id}: {request.message[:80]}",
            summary=f"Question {inquiry.inquiry_id} from the customer",
        )
        customer = self._journal.customer
        forward = SupportInquiryInput(
            idempotency_key=f"{view.order_id}:inquiry:{inquiry.inquiry_id}",
            customer_email=customer.email if customer else "",
            inquiry=inquiry,
            order=view,
        )
        what = f"Forward {inquiry.inquiry_id} to support"
        with contextlib.suppress(HoldRejected):  # it stays on the order's timeline
            await self._holds.attempt(
                what,
                lambda: policies.local(
                    policies.SUPPORT_MAIL, NotificationActivities.notify_support, forward, what
                ),
            )
        return inquiry

    def validate_ask(self, request: InquiryRequest) -> None:
        if len(self._journal.view.inquiries) >= self._limits.max_inquiries:
            refuse(
                "InquiryRefused",
                f"this order has had its {self._limits.max_inquiries} questions; "
                "please write to support",
            )

    def validate_feedback(self, request: FeedbackRequest) -> None:
        view = self._journal.view
        if view.delivered_at is None:
            refuse("FeedbackRefused", "feedback opens once the order is delivered")
        if view.feedback is not None:
            refuse("FeedbackRefused", "feedback was already given for this order")

    async def give_feedback(self, request: FeedbackRequest) -> FeedbackView:
        view = self._journal.view
        view.feedback = FeedbackView(
            rating=request.rating, comment=request.comment, at=workflow.now()
        )
        await self._journal.note(
            "feedback", f"{request.rating}/5", summary=f"Feedback: {request.rating}/5"
        )
        return view.feedback


def refuse(error_type: str, message: str) -> NoReturn:
    """Refuse an Update: the caller gets the message, the order is unchanged."""
    raise ApplicationError(message, type=error_type, non_retryable=True)
