"""Every name that crosses a process boundary, in one place.

The API, the worker, the tests and operators' UI queries all agree on these; renaming one
breaks running orders, so change them only with a migration plan.
"""

from temporalio.common import SearchAttributeKey

TASK_QUEUE = "orders"
ORDER_WORKFLOW = "Order"

SIGNAL_CARRIER_EVENT = "carrier_event"
UPDATE_CANCEL = "cancel"
UPDATE_REQUEST_RETURN = "request_return"
UPDATE_REFUND = "refund"
UPDATE_ASK = "ask"
UPDATE_FEEDBACK = "give_feedback"
QUERY_STATUS = "status"

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
SEARCH_ATTRIBUTES = (ORDER_STATUS, CUSTOMER_ID)


def order_workflow_id(order_id: str) -> str:
    """The workflow id of an order: one order, one workflow, forever."""
    return f"order-{order_id}"
