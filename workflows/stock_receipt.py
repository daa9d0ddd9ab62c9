"""StockReceiptWorkflow: units arrive at a warehouse and go to the orders waiting for them.

One short workflow per receipt (its id comes from the operator's idempotency key): the units
are added and given to the backorder queue, oldest order first and whole orders only, in one
database transaction; then each order served is signalled. The allocation is ordermill's
logic, so it runs here rather than in the API handler, and a retried request finds the
receipt it started instead of adding the units twice.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

from activities.inventory import InventoryActivities
from models.activities import BackorderFilled, OrderRef, ReceiveStockInput, StockReceiptResult
from models.wire import SIGNAL_BACKORDER_FILLED, STOCK_RECEIPT_WORKFLOW, order_workflow_id
from workflows import policies


@workflow.defn(name=STOCK_RECEIPT_WORKFLOW, sandboxed=False)
class StockReceiptWorkflow:
    @workflow.run
    async def run(self, receipt: ReceiveStockInput) -> StockReceiptResult:
        what = f"Receive {receipt.add} x {receipt.sku} at {receipt.warehouse}"
        result = await policies.local(
            policies.DATABASE, InventoryActivities.receive_stock, receipt, what
        )
        for filled in result.filled:
            order = workflow.get_external_workflow_handle(order_workflow_id(filled.order_id))
            try:
                await order.signal(
                    SIGNAL_BACKORDER_FILLED,
                    BackorderFilled(receipt_id=receipt.receipt_id, parcels=filled.parcels),
                )
            except FailureError:
                # The order has closed (it left the queue as the receipt filled it): its
                # units go back on the shelf rather than wait for an order that is gone.
                await workflow.execute_local_activity_method(
                    InventoryActivities.release_stock,
                    OrderRef(order_id=filled.order_id),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=policies.DATABASE.retry,
                    summary=f"Release {filled.order_id}'s units: the order has closed",
                )
        return result
