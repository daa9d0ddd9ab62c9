"""`make demo`: customers and a carrier, played against a running `make run`.

Places a handful of orders through the HTTP API (a paperback, an express order, an e-book, a
declined card, a cancellation, a card gateway that fails twice before it approves, an order in
two parcels from two warehouses, a parcel that comes back, a book returned for a refund, a
first edition an operator reviews and releases, a new customer's order the operator rejects, a
book on backorder until its stock arrives), then plays the carrier and the operator. Once a
parcel is with the carrier it posts signed tracking webhooks a few seconds apart, as EasyPost
would, and likewise for the return parcel; the operator decides the reviews and receives the
backordered stock over the API. One status line per order shows where each one is; the same
orders are in the Temporal UI (search `OrderStatus="shipped"` or `OrderHolds="risk_review"`).

Only HTTP: API_URL (default: this machine's API_HOST/API_PORT), a client API key from
ORDERMILL_API_KEY (default: the development client key, omk_dev_client), an operator key from
ORDERMILL_OPERATOR_KEY (default: the development operator key) and the carrier's
webhook secrets from CARRIER_WEBHOOK_SECRETS / CARRIER_WEBHOOK_SECRET (the development default
when unset). The carrier's webhooks carry only their signature, never an API key.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # settings.py and friends live at the repository root

import httpx  # noqa: E402

from activities.tracking_links import TrackingLinks  # noqa: E402
from api.signatures import SIGNATURE_HEADER, secrets_from_setting, sign  # noqa: E402
from models.orders import FINAL_STATUSES, OrderStatus  # noqa: E402
from models.shipments import CarrierStatus  # noqa: E402
from player.board import Board, describe  # noqa: E402
from player.scenarios import SCENARIOS, TO_THE_DOOR, Scenario  # noqa: E402
from settings import DEV_API_KEY_ENTRIES, Settings  # noqa: E402

# The development keys `make run` prints; ORDERMILL_API_KEY / ORDERMILL_OPERATOR_KEY replace them.
DEV_CLIENT_KEY = next(e.key for e in DEV_API_KEY_ENTRIES if e.role == "client")
DEV_OPERATOR_KEY = next(e.key for e in DEV_API_KEY_ENTRIES if e.role == "operator")

RESTOCK_ATTEMPTS = 5  # receipts for a backorder: older waiting orders are served first


class Demo:
    def __init__(
        self,
        http: httpx.AsyncClient,
        operator: httpx.AsyncClient,
        carrier: httpx.AsyncClient,
        secrets: list[str],
        step: float,
        board: Board,
    ):
        self.http = http  # the shop's client, with its API key
        self.operator = operator  # the operator: reviews and stock receipts
        self.carrier = carrier  # the carrier: signed webhooks, no API key
        self.secrets = secrets
        self.step = step
        self.board = board
        self.placed: dict[int, tuple[str, datetime]] = {}  # scenario number -> id, placed at
        self.run_id = uuid.uuid4().hex[:8]

    async def play(self, number: int, scenario: Scenario, within: float) -> bool:
        """Place the scenario's order and carry it to its expected status; True if it got there."""

        def show(text: str) -> None:
            self.board.show(scenario.label, text)

        if scenario.replenish:
            for sku, quantity in scenario.items:
                key = f"demo-{self.run_id}-{number}-{sku}"
                refused, _ = await self.receive(sku, quantity, key)
                if refused:
                    show(refused)
                    return False

        placed = await self.http.post(
            "/orders",
            json=scenario.body(),
            headers={"Idempotency-Key": f"demo-{self.run_id}-{number}"},
        )
        if placed.status_code != 202:
            show(f"could not be placed: HTTP {placed.status_code} {problem(placed)}")
            return False
        order_id = placed.json()["order_id"]
        self.placed[number] = (order_id, datetime.fromisoformat(placed.json()["placed_at"]))
        show(f"{order_id}  placed")

        if scenario.cancel:
            cancelled = await self.http.post(
                f"/orders/{order_id}/cancel", json={"reason": "changed my mind"}
            )
            if cancelled.status_code not in (200, 202):
                show(f"{order_id}  cancel refused: {problem(cancelled)}")
                return False

        deadline = time.monotonic() + within
        scripts: dict[str, list[CarrierStatus]] = {}  # tracking number -> events still to play
        return_events = list(TO_THE_DOOR)  # the return parcel's way back to the warehouse
        return_tracking: str | None = None
        next_event_at = 0.0
        reviewed, receipts, served = False, 0, False
        while True:
            view = (await self.http.get(f"/orders/{order_id}")).json()
            status = OrderStatus(view["status"])
            show(f"{order_id}  {describe(view)}")
            if status is scenario.expect:
                return True
            if scenario.review and not reviewed and _open_hold(view, "risk_review"):
                refused = await self.decide(order_id, scenario.review)
                if refused:
                    show(f"{order_id}  {refused}")
                    return False
                reviewed = True
            backordered = status is OrderStatus.BACKORDERED
            if scenario.restock and backordered and not served and receipts < RESTOCK_ATTEMPTS:
                # One unit at a time: a receipt serves older waiting orders first.
                receipts += 1
                for sku in view["backordered"]:
                    key = f"demo-{self.run_id}-{number}-{sku}-{receipts}"
                    refused, filled = await self.receive(sku, 1, key)
                    if refused:
                        show(f"{order_id}  {refused}")
                        return False
                    served = order_id in filled
            if status in FINAL_STATUSES:
                show(f"{order_id}  {describe(view)}  (expected {scenario.expect.value})")
                return False
            for shipment in view["shipments"]:
                if shipment["tracking_number"] and shipment["tracking_number"] not in scripts:
                    script = scenario.parcels.get(shipment["shipment_id"], scenario.carrier)
                    scripts[shipment["tracking_number"]] = list(script)
            if any(scripts.values()) and time.monotonic() >= next_event_at:
                for tracking, script in scripts.items():
                    if script:
                        refused = await self.carrier_reports(tracking, script.pop(0))
                        if refused:
                            show(f"{order_id}  {refused}")
                            return False
                next_event_at = time.monotonic() + self.step
            if status is OrderStatus.DELIVERED and scenario.returns and return_tracking is None:
                asked = await self.http.post(
                    f"/orders/{order_id}/returns",
                    json={
                        "lines": [{"sku": sku, "quantity": n} for sku, n in scenario.returns],
                        "reason": "damaged",
                        "resolution": "refund",
                    },
                    # Returns move money: a retry of this request must never return twice.
                    headers={"Idempotency-Key": f"demo-return-{order_id}"},
                )
                if asked.status_code != 201:
                    show(f"{order_id}  return refused: {problem(asked)}")
                    return False
                return_tracking = asked.json()["tracking_number"]
                next_event_at = time.monotonic() + self.step
            if return_tracking and return_events and time.monotonic() >= next_event_at:
                refused = await self.carrier_reports(return_tracking, return_events.pop(0))
                if refused:
                    show(f"{order_id}  {refused}")
                    return False
                next_event_at = time.monotonic() + self.step
            if time.monotonic() > deadline:
                show(
                    f"{order_id}  still {status.value} after {within:.0f}s "
                    f"(expected {scenario.expect.value})"
                )
                return False
            await asyncio.sleep(0.5)

    async def decide(self, order_id: str, decision: str) -> str | None:
        """The operator's decision on the order's risk review; why it failed, if it did."""
        reason = "known customer, address checked" if decision == "release" else "card testing"
        answer = await self.operator.post(
            f"/orders/{order_id}/holds/risk_review/{decision}", json={"reason": reason}
        )
        if answer.status_code in (200, 202):
            return None
        return f"review {decision} refused: HTTP {answer.status_code} {problem(answer)}"

    async def receive(self, sku: str, units: int, key: str) -> tuple[str | None, list[str]]:
        """Units of `sku` arrive at WH-EAST (a stock receipt): why it failed, if it did, and
        the backordered orders it served."""
        answer = await self.operator.post(
            f"/products/{sku}/stock",
            json={"warehouse": "WH-EAST", "add": units},
            headers={"Idempotency-Key": key},
        )
        if answer.status_code == 200:
            return None, answer.json()["filled_orders"]
        if answer.status_code == 202:
            return None, []
        return f"stock receipt refused: HTTP {answer.status_code} {problem(answer)}", []

    async def carrier_reports(self, tracking: str, status: CarrierStatus) -> str | None:
        """Post one tracking event, signed as the carrier signs; why it was refused, if it was."""
        event = {
            "event_id": f"evt_{tracking}_{status.value}",
            "tracking_number": tracking,
            "status": status.value,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        body = json.dumps(event).encode()  # the exact bytes that are signed and sent
        answer = await self.carrier.post(
            "/webhooks/carrier",
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(body, self.secrets),
            },
        )
        if answer.is_success:
            return None
        return f"webhook {status.value} refused: HTTP {answer.status_code} {problem(answer)}"


def _open_hold(view: dict[str, Any], code: str) -> bool:
    return any(h["code"] == code and h["resolution"] is None for h in view.get("holds") or [])


def problem(response: httpx.Response) -> str:
    """The `detail` of an RFC 9457 problem answer, or the start of whatever else came back."""
    try:
        return str(response.json().get("detail") or response.text[:200])
    except ValueError:
        return response.text[:200]


def default_api_url(settings: Settings) -> str:
    host = settings.api_host
    host = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1", "::1", "") else host
    return f"http://{host}:{settings.api_port}"


async def main_async(args: argparse.Namespace) -> int:
    settings = Settings()
    try:
        secrets = secrets_from_setting(settings.webhook_secret)
    except RuntimeError as err:  # production without a secret
        print(f"demo: {err}", file=sys.stderr)
        return 1
    auth = {"Authorization": f"Bearer {args.api_key}"}
    operator_auth = {"Authorization": f"Bearer {args.operator_key}"}
    async with (
        httpx.AsyncClient(base_url=args.api_url, timeout=30.0, headers=auth) as http,
        httpx.AsyncClient(base_url=args.api_url, timeout=30.0, headers=operator_auth) as operator,
        httpx.AsyncClient(base_url=args.api_url, timeout=10.0) as carrier,
    ):
        try:
            (await http.get("/healthz")).raise_for_status()
        except httpx.HTTPError as err:
            print(
                f"demo: no ordermill API answers at {args.api_url} ({err}).\n"
                "Start everything with `make run` first, or point API_URL at the API.",
                file=sys.stderr,
            )
            return 1
        checked = await http.get("/orders", params={"limit": 1})
        if checked.status_code in (401, 403):
            print(
                f"demo: the API refused the key: {problem(checked)}\n"
                "Set ORDERMILL_API_KEY to a client key from the API's API_KEYS.",
                file=sys.stderr,
            )
            return 1
        print(
            f"Placing {len(SCENARIOS)} orders at {args.api_url}; the carrier reports every "
            f"{args.step:g}s once an order has shipped.\n",
            flush=True,
        )
        board = Board([s.label for s in SCENARIOS], live=sys.stdout.isatty())
        if board.live:
            board.redraw()
        demo = Demo(http, operator, carrier, secrets, args.step, board)
        results = await asyncio.gather(
            *(demo.play(n, s, args.timeout) for n, s in enumerate(SCENARIOS, 1))
        )
    failed = [s.label for s, ok in zip(SCENARIOS, results, strict=True) if not ok]
    print()
    if failed:
        print(f"demo: {len(failed)} order(s) did not end as expected: {', '.join(failed)}")
        return 1
    print(
        "Every order ended as expected. Find them in the Temporal UI, e.g. with the query "
        'OrderStatus="delivered" or CustomerId="cus_ada"; emails are in the outbox (or Mailpit).'
    )
    if 1 in demo.placed:
        order_id, placed_at = demo.placed[1]
        links = TrackingLinks(args.api_url, settings.tracking_secret, settings.tracking_link_ttl)
        print(f"Follow the first as its customer does: {links.url(order_id, placed_at)}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--api-url",
        default=os.environ.get("API_URL") or default_api_url(Settings()),
        help="where the API answers (API_URL; default from API_HOST/API_PORT)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("ORDERMILL_API_KEY") or DEV_CLIENT_KEY,
        help=f"a client API key (ORDERMILL_API_KEY; default {DEV_CLIENT_KEY})",
    )
    parser.add_argument(
        "--operator-key",
        default=os.environ.get("ORDERMILL_OPERATOR_KEY") or DEV_OPERATOR_KEY,
        help="an operator API key, for the reviews and stock receipts (ORDERMILL_OPERATOR_KEY)",
    )
    parser.add_argument(
        "--step", type=float, default=3.0, help="seconds between a parcel's tracking events"
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds each order may take in all"
    )
    args = parser.parse_args()
    try:
        sys.exit(asyncio.run(main_async(args)))
    except KeyboardInterrupt:
        print("\ndemo: interrupted; the orders carry on in Temporal", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
