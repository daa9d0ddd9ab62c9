"""Each scenario's order, played from placing it to the status it should end in."""

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

import httpx

from models.orders import FINAL_STATUSES, OrderStatus
from models.shipments import CarrierStatus
from player.board import Board, describe
from player.parties import Carrier, Operator, problem
from player.scenarios import TO_THE_DOOR, Scenario

RESTOCK_ATTEMPTS = 5  # receipts for a backorder: older waiting orders are served first


class Demo:
    """Plays each scenario's customer with the shop's client; the operator and the carrier
    step in when its order needs them."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        operator: Operator,
        carrier: Carrier,
        step: float,
        board: Board,
    ):
        self.http = http  # the shop's client, with its API key
        self.operator = operator
        self.carrier = carrier
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
                refused, _ = await self.operator.receive(sku, quantity, key)
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
                refused = await self.operator.decide(order_id, scenario.review)
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
                    refused, filled = await self.operator.receive(sku, 1, key)
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
                        refused = await self.carrier.reports(tracking, script.pop(0))
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
                refused = await self.carrier.reports(return_tracking, return_events.pop(0))
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


def _open_hold(view: dict[str, Any], code: str) -> bool:
    return any(h["code"] == code and h["resolution"] is None for h in view.get("holds") or [])
