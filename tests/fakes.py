"""Fake outside systems for the workflow tests: every order activity under its real name.

`FakeOrderSystems` stands in for the customer store, inventory, card processor, warehouse,
carrier, mailer, download store and read model at once. Each fake records what it was asked
in `calls`, so a test asserts behaviour ("exactly one authorize", "the void named that
authorization") rather than only the final status. `fake_worker` runs them with the real
OrderWorkflow on a fresh task queue.
"""

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.errors import (
    CUSTOMER_REJECTED,
    DATA_REJECTED,
    OUT_OF_STOCK,
    PAYMENT_DECLINED,
    REFUND_REFUSED,
    UNKNOWN_SKU,
    business_failure,
)
from models.activities import (
    AuthorizePaymentInput,
    BookedShipment,
    BookShipmentInput,
    CapturePaymentInput,
    CommitStockInput,
    EmailKind,
    EmailReceipt,
    FilledBackorder,
    OrderEmail,
    OrderRef,
    Parcel,
    PaymentAuthorization,
    PaymentResult,
    PickPackInput,
    ReceiveStockInput,
    RecordOrderInput,
    RefundPaymentInput,
    Reservation,
    ReserveStockInput,
    RestockInput,
    RevokeDownloadsInput,
    ShipmentDirection,
    StockLevel,
    StockReceiptResult,
    SupportInquiryInput,
    VerifiedCustomer,
    VerifyCustomerInput,
    VoidPaymentInput,
)
from models.orders import Address, OrderLine
from workflows.allocation import allocate, fill_backorders
from workflows.order import OrderWorkflow
from workflows.stock_receipt import StockReceiptWorkflow

ADA_ADDRESS = Address(
    name="Ada Lovelace",
    line1="12 Analytical Way",
    city="Springfield",
    postal_code="62701",
    country="US",
)
ADA = VerifiedCustomer(
    customer_id="cus_ada",
    name="Ada Lovelace",
    email="ada@example.com",
    shipping_address=ADA_ADDRESS,
)
NEWBIE = VerifiedCustomer(
    customer_id="cus_newbie",
    name="Nell Newbie",
    email="nell@example.com",
    shipping_address=ADA_ADDRESS,
    review_required=True,
)


WAREHOUSES = ["WH-EAST", "WH-WEST"]


@dataclass
class FakeProduct:
    name: str
    price: int
    digital: bool = False
    # Free units per warehouse.
    stock: dict[str, int] = field(default_factory=lambda: {"WH-EAST": 100})
    backorderable: bool = False


def fake_catalog() -> dict[str, FakeProduct]:
    """BOOK-DUNE ships from WH-EAST and BOOK-EARTHSEA from WH-WEST: ordering both splits."""
    return {
        "BOOK-DUNE": FakeProduct("Dune (paperback)", 1899),
        "BOOK-EARTHSEA": FakeProduct("A Wizard of Earthsea", 1299, stock={"WH-WEST": 100}),
        "BOOK-SOLDOUT": FakeProduct("Out-of-print atlas", 4999, stock={}),
        "EBOOK-DUNE": FakeProduct("Dune (e-book)", 999, digital=True, stock={}),
        "BOOK-FIRST-EDITION": FakeProduct("Dune, first edition", 120000, stock={"WH-EAST": 3}),
        "BOOK-PREORDER": FakeProduct("Dune: the lost chapters", 2499, stock={}, backorderable=True),
    }


DECLINED_TOKEN = "tok_chargeDeclined"
FLAKY_TOKEN = "tok_gatewayFlaky"


@dataclass
class Call:
    """One attempt at an activity: what it was asked, and how it ended."""

    name: str
    arg: Any
    result: Any = None
    error: str | None = None  # the exception the fake raised, if it did
    done: bool = False

    @property
    def succeeded(self) -> bool:
        return self.done and self.error is None


Arg = TypeVar("Arg", bound=BaseModel)
Result = TypeVar("Result")
FakeMethod = Callable[[Any, Arg], Awaitable[Result]]


def _fake(name: str) -> Callable[[FakeMethod[Arg, Result]], FakeMethod[Arg, Result]]:
    """An activity under its real name that records every attempt and how it ended."""

    def wrap(method: FakeMethod[Arg, Result]) -> FakeMethod[Arg, Result]:
        @functools.wraps(method)
        async def attempt(self: "FakeOrderSystems", request: Arg) -> Result:
            call = self._log(name, request)
            try:
                result = await method(self, request)
            except BaseException as err:
                call.error, call.done = f"{type(err).__name__}: {err}", True
                raise
            call.result, call.done = result, True
            return result

        return activity.defn(name=name)(attempt)

    return wrap


def _open_gate() -> asyncio.Event:
    gate = asyncio.Event()
    gate.set()
    return gate


@dataclass
class FakeOrderSystems:
    """All outside systems of an order, in memory, recording every call (retries included)."""

    customers: dict[str, VerifiedCustomer] = field(
        default_factory=lambda: {"cus_ada": ADA, "cus_newbie": NEWBIE}
    )
    blocked: set[str] = field(default_factory=lambda: {"cus_blocked"})
    catalog: dict[str, FakeProduct] = field(default_factory=fake_catalog)
    flaky_failures: int = 2
    # Pick/pack runs until cancelled, heartbeating, so a test can cancel an order mid-fulfilment.
    hold_pick_pack: bool = False
    # Warehouses whose pick/pack is held the same way; the others pack at once.
    held_warehouses: set[str] = field(default_factory=set)
    # Capture waits until this is set, so a test can act between booking and `shipped`.
    capture_allowed: asyncio.Event = field(default_factory=_open_gate)
    # SKUs the warehouse has run out of since the order was placed (an exchange finds none).
    sold_out: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    authorized: dict[str, int] = field(default_factory=dict)
    # Failures on demand: the next N captures declined, the next N refunds refused, and
    # activities (by name) that fail as an outage on every attempt while named here.
    capture_declines: int = 0
    refund_refusals: int = 0
    down: set[str] = field(default_factory=set)
    # A passing outage: the next N attempts of an activity (by name) fail, then it is back.
    outages: dict[str, int] = field(default_factory=dict)
    refuse_records: int = 0
    # The record of the change whose timeline ends with this event waits for `record_resumed`,
    # so a test can act while that change is being recorded (`record_paused` is set then).
    pause_record_of: str | None = None
    record_paused: asyncio.Event = field(default_factory=asyncio.Event)
    record_resumed: asyncio.Event = field(default_factory=asyncio.Event)
    pick_pack_cancelled: bool = False
    # Units held per order, as (warehouse, sku) -> units.
    held: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    revoked: set[tuple[str, str]] = field(default_factory=set)
    # Units that left with a parcel, and units put back on the shelf, as (warehouse, sku).
    committed: dict[tuple[str, str], int] = field(default_factory=dict)
    restocked: dict[tuple[str, str], int] = field(default_factory=dict)
    # The backorder queue, oldest first: order id -> physical units wanted per SKU.
    backorders: dict[str, dict[str, int]] = field(default_factory=dict)
    # Authorizations lapse this long after they are made (by the server's clock, which the
    # time-skipping server moves); from the Nth authorize of an order on, declined.
    auth_validity: timedelta = timedelta(days=7)
    expiries: dict[str, datetime] = field(default_factory=dict)
    decline_authorizations_from: int | None = None

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.verify_customer,
            self.reserve_stock,
            self.release_stock,
            self.commit_stock,
            self.restock,
            self.receive_stock,
            self.authorize_payment,
            self.capture_payment,
            self.void_payment,
            self.refund_payment,
            self.pick_and_pack,
            self.book_shipment,
            self.notify_support,
            self.revoke_downloads,
            self.record_order,
        ]

    # ---- what the tests read -----------------------------------------------------------------

    def called(self, name: str) -> list[Any]:
        """What `name` was asked, every attempt (failed ones included)."""
        return [call.arg for call in self.calls if call.name == name]

    def succeeded(self, name: str) -> list[Call]:
        """The attempts of `name` that returned, with their results."""
        return [call for call in self.calls if call.name == name and call.succeeded]

    def names(self) -> list[str]:
        """The business calls in order, without the read model's bookkeeping."""
        return [call.name for call in self.calls if call.name != "record_order"]

    def sent(self) -> list[OrderEmail]:
        """The emails recorded with the order's changes, in order."""
        return [r.email for r in self.called("record_order") if r.email is not None]

    def emails(self) -> list[EmailKind]:
        return [email.kind for email in self.sent()]

    def _log(self, name: str, arg: BaseModel) -> Call:
        call = Call(name, arg.model_copy(deep=True))
        self.calls.append(call)
        outage = self.outages.get(name, 0)
        if outage > 0:
            self.outages[name] = outage - 1
        if name in self.down or outage > 0:
            call.error, call.done = "RuntimeError: connection refused", True
            raise RuntimeError(f"{name}: connection refused")
        return call

    # ---- customers and inventory -------------------------------------------------------------

    @_fake("verify_customer")
    async def verify_customer(self, request: VerifyCustomerInput) -> VerifiedCustomer:
        if request.customer_id in self.blocked:
            raise business_failure(CUSTOMER_REJECTED, "customer_blocked", "customer is blocked")
        customer = self.customers.get(request.customer_id)
        if customer is None:
            raise business_failure(CUSTOMER_REJECTED, "unknown_customer", "no such customer")
        if request.shipping_address is not None:
            customer = customer.model_copy(update={"shipping_address": request.shipping_address})
        return customer

    @_fake("reserve_stock")
    async def reserve_stock(self, request: ReserveStockInput) -> Reservation:
        wanted: dict[str, int] = {}
        for item in request.items:
            if item.sku not in self.catalog:
                raise business_failure(UNKNOWN_SKU, "unknown_sku", f"{item.sku} is unknown")
            wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
        lines = [
            OrderLine(
                sku=sku,
                name=self.catalog[sku].name,
                quantity=quantity,
                unit_price=self.catalog[sku].price,
                digital=self.catalog[sku].digital,
            )
            for sku, quantity in wanted.items()
        ]
        physical = {line.sku: line.quantity for line in lines if not line.digital}
        available = {
            warehouse: {
                sku: 0 if sku in self.sold_out else product.stock.get(warehouse, 0)
                for sku, product in self.catalog.items()
            }
            for warehouse in WAREHOUSES
        }
        queued = {sku for wanted in self.backorders.values() for sku in wanted}
        if request.order_id in self.backorders:
            return Reservation(
                order_id=request.order_id, lines=lines, parcels=[], backordered=sorted(physical)
            )
        parcels = allocate(
            physical, available, WAREHOUSES, single_warehouse=request.single_warehouse
        )
        unfilled = [
            sku
            for sku, units in physical.items()
            if sum(free[sku] for free in available.values()) < units
        ]
        # Behind an order already waiting for a SKU, a new one waits too: no queue-jumping.
        behind = [sku for sku in physical if sku in queued and self.catalog[sku].backorderable]
        if (
            request.allow_backorder
            and (parcels is None or behind)
            and all(self.catalog[sku].backorderable for sku in unfilled)
        ):
            self.backorders[request.order_id] = physical
            return Reservation(
                order_id=request.order_id,
                lines=lines,
                parcels=[],
                backordered=sorted(set(unfilled) | set(behind)),
            )
        if parcels is None:
            short = [
                sku
                for sku, units in physical.items()
                if sum(free[sku] for free in available.values()) < units
            ]
            raise business_failure(
                OUT_OF_STOCK, "out_of_stock", f"not enough stock of {', '.join(short)}"
            )
        held = self.held.setdefault(request.order_id, {})
        for parcel in parcels:
            for line in parcel.lines:
                self.catalog[line.sku].stock[parcel.warehouse] -= line.quantity
                held[(parcel.warehouse, line.sku)] = line.quantity
        return Reservation(order_id=request.order_id, lines=lines, parcels=parcels)

    @_fake("release_stock")
    async def release_stock(self, request: OrderRef) -> int:
        self.backorders.pop(request.order_id, None)
        held = self.held.pop(request.order_id, {})
        for (warehouse, sku), quantity in held.items():
            self.catalog[sku].stock[warehouse] += quantity
        return sum(held.values())

    @_fake("commit_stock")
    async def commit_stock(self, request: CommitStockInput) -> int:
        held = self.held.get(request.order_id, {})
        mine = {key: n for key, n in held.items() if key[0] == request.warehouse}
        for key, units in mine.items():
            del held[key]
            self.committed[key] = self.committed.get(key, 0) + units
        return sum(mine.values())

    @_fake("restock")
    async def restock(self, request: RestockInput) -> int:
        units = 0
        for parcel in request.parcels:
            for line in parcel.lines:
                stock = self.catalog[line.sku].stock
                stock[parcel.warehouse] = stock.get(parcel.warehouse, 0) + line.quantity
                units += line.quantity
                key = (parcel.warehouse, line.sku)
                self.restocked[key] = self.restocked.get(key, 0) + line.quantity
        return units

    @_fake("receive_stock")
    async def receive_stock(self, request: ReceiveStockInput) -> StockReceiptResult:
        """Units in, then the queue served oldest first, whole orders only (the real rule)."""
        stock = self.catalog[request.sku].stock
        stock[request.warehouse] = stock.get(request.warehouse, 0) + request.add
        available = {
            warehouse: {sku: p.stock.get(warehouse, 0) for sku, p in self.catalog.items()}
            for warehouse in WAREHOUSES
        }
        served = fill_backorders(list(self.backorders.items()), available, WAREHOUSES)
        filled = []
        for order_id, parcels in served:
            del self.backorders[order_id]
            held = self.held.setdefault(order_id, {})
            for parcel in parcels:
                for line in parcel.lines:
                    self.catalog[line.sku].stock[parcel.warehouse] -= line.quantity
                    held[(parcel.warehouse, line.sku)] = line.quantity
            filled.append(FilledBackorder(order_id=order_id, parcels=parcels))
        return StockReceiptResult(
            receipt_id=request.receipt_id,
            sku=request.sku,
            warehouse=request.warehouse,
            added=request.add,
            filled=filled,
            stock=[
                StockLevel(warehouse=w, on_hand=units, reserved=0) for w, units in stock.items()
            ],
        )

    # ---- payments ----------------------------------------------------------------------------

    def _expired(self, authorization_id: str) -> bool:
        expiry = self.expiries.get(authorization_id)
        return expiry is not None and activity.info().current_attempt_scheduled_time >= expiry

    @_fake("authorize_payment")
    async def authorize_payment(self, request: AuthorizePaymentInput) -> PaymentAuthorization:
        if request.token == DECLINED_TOKEN:
            raise business_failure(PAYMENT_DECLINED, "card_declined", "the card was declined")
        if request.token == FLAKY_TOKEN and activity.info().attempt <= self.flaky_failures:
            raise ApplicationError("processor timeout", type="GatewayUnavailable")
        earlier = [
            c for c in self.succeeded("authorize_payment") if c.arg.order_id == request.order_id
        ]
        nth = 1 + len(earlier)
        if self.decline_authorizations_from is not None and nth >= self.decline_authorizations_from:
            raise business_failure(PAYMENT_DECLINED, "card_declined", "the card was declined")
        authorization_id = f"auth-{request.idempotency_key}"
        self.authorized[authorization_id] = request.amount
        expires_at = activity.info().current_attempt_scheduled_time + self.auth_validity
        self.expiries[authorization_id] = expires_at
        return PaymentAuthorization(
            authorization_id=authorization_id, amount=request.amount, expires_at=expires_at
        )

    @_fake("capture_payment")
    async def capture_payment(self, request: CapturePaymentInput) -> PaymentResult:
        await self.capture_allowed.wait()
        if self._expired(request.authorization_id):
            raise business_failure(
                PAYMENT_DECLINED, "authorization_expired", "the authorization has expired"
            )
        if self.capture_declines > 0:
            self.capture_declines -= 1
            raise business_failure(PAYMENT_DECLINED, "card_declined", "the capture was declined")
        return PaymentResult(transaction_id=f"cap-{request.idempotency_key}", amount=request.amount)

    @_fake("void_payment")
    async def void_payment(self, request: VoidPaymentInput) -> PaymentResult:
        """Releases what the authorization holds uncaptured, as the real processor does."""
        authorization = f"auth-{request.authorize_key}"
        captured = sum(
            c.result.amount
            for c in self.succeeded("capture_payment")
            if c.arg.authorization_id == authorization
        )
        left = self.authorized.get(authorization, 0) - captured
        if left > 0 and self._expired(authorization):
            raise business_failure(
                PAYMENT_DECLINED, "authorization_expired", "the authorization has expired"
            )
        return PaymentResult(transaction_id=f"void-{request.idempotency_key}", amount=left)

    @_fake("refund_payment")
    async def refund_payment(self, request: RefundPaymentInput) -> PaymentResult:
        if self.refund_refusals > 0:
            self.refund_refusals -= 1
            raise business_failure(REFUND_REFUSED, "refund_refused", "the processor refused it")
        return PaymentResult(transaction_id=f"ref-{request.idempotency_key}", amount=request.amount)

    # ---- warehouse and carrier ---------------------------------------------------------------

    @_fake("pick_and_pack")
    async def pick_and_pack(self, request: PickPackInput) -> Parcel:
        try:
            while self.hold_pick_pack or request.warehouse in self.held_warehouses:
                activity.heartbeat("picking")
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self.pick_pack_cancelled = True
            raise
        return Parcel(
            parcel_id=f"PCL-{request.order_id}-{request.shipment_id}",
            items=sum(ln.quantity for ln in request.lines),
        )

    @_fake("book_shipment")
    async def book_shipment(self, request: BookShipmentInput) -> BookedShipment:
        """Tracking numbers a test can predict: `TRK-<order>-SHP-1` for the order's first
        parcel, `TRK-<order>-RET-1-exchange` for the exchange sent for RET-1,
        `RTN-<order>-RET-1` for its return label."""
        if request.direction is ShipmentDirection.RETURN:
            tracking = f"RTN-{request.order_id}-{request.parcel_id.removesuffix('-label')}"
        else:
            tracking = f"TRK-{request.order_id}-{request.parcel_id}"
        return BookedShipment(carrier="fake-carrier", tracking_number=tracking)

    # ---- notifications -----------------------------------------------------------------------

    @_fake("notify_support")
    async def notify_support(self, request: SupportInquiryInput) -> EmailReceipt:
        return EmailReceipt(message_id=f"<{request.idempotency_key}@fake>", already_sent=False)

    # ---- downloads and read model ------------------------------------------------------------

    @_fake("revoke_downloads")
    async def revoke_downloads(self, request: RevokeDownloadsInput) -> int:
        self.revoked.update((request.order_id, sku) for sku in request.skus)
        return len(request.skus)

    @_fake("record_order")
    async def record_order(self, request: RecordOrderInput) -> None:
        """Refuses the next `refuse_records` records as the database refuses bad data, unless
        asked to scrub it."""
        timeline = request.order.timeline
        if self.pause_record_of is not None and timeline[-1].event == self.pause_record_of:
            self.pause_record_of = None
            self.record_paused.set()
            await self.record_resumed.wait()
        if self.refuse_records > 0 and not request.scrub:
            self.refuse_records -= 1
            raise ApplicationError(
                "the database refused the data: invalid byte sequence",
                type=DATA_REJECTED,
                non_retryable=True,
            )


@asynccontextmanager
async def fake_worker(
    client: Client, fakes: FakeOrderSystems, *, task_queue: str | None = None, **options: Any
) -> AsyncIterator[str]:
    """Run OrderWorkflow with `fakes` on a fresh task queue (or on `task_queue`, for orders
    started the way the API starts them), yielding the queue's name; `options` go to the Worker.

    Heartbeats are flushed every 100 ms (not every 8 s, 80% of pick/pack's heartbeat timeout)
    so a cancel reaches the fake warehouse promptly.
    """
    task_queue = task_queue or f"orders-test-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[OrderWorkflow, StockReceiptWorkflow],
        activities=fakes.activities(),
        max_heartbeat_throttle_interval=timedelta(milliseconds=100),
        default_heartbeat_throttle_interval=timedelta(milliseconds=100),
        **options,
    ):
        yield task_queue
