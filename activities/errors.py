"""Business failures an activity reports to the workflow: non-retryable, with a reason code."""

from temporalio.exceptions import ApplicationError

CUSTOMER_REJECTED = "CustomerRejected"
OUT_OF_STOCK = "OutOfStock"
UNKNOWN_SKU = "UnknownSku"
PAYMENT_DECLINED = "PaymentDeclined"
REFUND_REFUSED = "RefundRefused"


def business_failure(error_type: str, code: str, message: str) -> ApplicationError:
    """A failure retrying cannot fix; `code` is the order's machine-readable reason."""
    return ApplicationError(message, code, type=error_type, non_retryable=True)
