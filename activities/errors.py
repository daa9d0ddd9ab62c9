"""Business failures an activity reports to the workflow: non-retryable, with a reason code."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DataError, IntegrityError
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

CUSTOMER_REJECTED = "CustomerRejected"
OUT_OF_STOCK = "OutOfStock"
UNKNOWN_SKU = "UnknownSku"
PAYMENT_DECLINED = "PaymentDeclined"
REFUND_REFUSED = "RefundRefused"
# The database refused the order's data (a NUL character, a value past a column's bound):
# retrying the same data can never succeed.
DATA_REJECTED = "DataRejected"


def business_failure(error_type: str, code: str, message: str) -> ApplicationError:
    """A failure retrying cannot fix; `code` is the order's machine-readable reason.

    Benign: an expected answer (a declined card, no stock), so the SDK neither logs it as an
    error nor counts it in its failure metrics.
    """
    return ApplicationError(
        message,
        code,
        type=error_type,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


@contextmanager
def refused_data_is_final() -> Iterator[None]:
    """The database refusing the data itself is no outage: retrying the same data cannot help.

    Raised non-retryable as DATA_REJECTED, so the order is held for an operator instead of
    retrying until its history is too long to run.
    """
    try:
        yield
    except (DataError, IntegrityError) as refused:
        raise ApplicationError(
            f"the database refused the data: {refused.orig}",
            type=DATA_REJECTED,
            non_retryable=True,
        ) from refused
