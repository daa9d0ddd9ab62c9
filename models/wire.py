"""Every name that crosses a process boundary, in one place.

The API, the worker, the tests and operators' UI queries all agree on these; renaming one
breaks running orders, so change them only with a migration plan.
"""

from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.common import SearchAttributeKey

TASK_QUEUE = "orders"
ORDER_WORKFLOW = "Order"
STOCK_RECEIPT_WORKFLOW = "StockReceipt"
RECONCILE_WORKFLOW = "Reconcile"
# The Schedule that runs the reconciliation nightly, and the id of a run an operator starts:
# one fixed id, so two requests cannot start two runs.
RECONCILE_SCHEDULE = "ordermill-reconcile"
RECONCILE_ON_REQUEST = "ordermill-reconcile-on-request"

SIGNAL_CARRIER_EVENT = "carrier_event"
SIGNAL_BACKORDER_FILLED = "backorder_filled"
UPDATE_CANCEL = "cancel"
UPDATE_REQUEST_RETURN = "request_return"
UPDATE_REFUND = "refund"
UPDATE_ASK = "ask"
UPDATE_FEEDBACK = "give_feedback"
UPDATE_RESOLVE_HOLD = "resolve_hold"
QUERY_STATUS = "status"

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
# The codes of the order's open holds: `OrderHolds = "capture_declined"` is a review queue.
ORDER_HOLDS = SearchAttributeKey.for_keyword_list("OrderHolds")
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[Any], ...] = (ORDER_STATUS, CUSTOMER_ID, ORDER_HOLDS)


def search_attribute_type(key: SearchAttributeKey[Any]) -> str:
    """The type's name as `temporal operator search-attribute create --type` spells it."""
    return (
        "KeywordList"
        if key.indexed_value_type == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST
        else "Keyword"
    )


def order_workflow_id(order_id: str) -> str:
    """The workflow id of an order: one order, one workflow, forever."""
    return f"order-{order_id}"


def stock_receipt_workflow_id(receipt_id: str) -> str:
    """One receipt, one workflow: a retried request finds the receipt it started."""
    return f"stock-receipt-{receipt_id}"
