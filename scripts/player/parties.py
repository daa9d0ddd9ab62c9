"""The operator and the carrier, each with its own HTTP client: every call answers None, or in
words why the API refused it."""

import json
from datetime import UTC, datetime

import httpx

from api.signatures import SIGNATURE_HEADER, sign
from models.shipments import CarrierStatus


class Operator:
    """Decides risk reviews and receives stock, with an operator's API key."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def decide(self, order_id: str, decision: str) -> str | None:
        """The operator's decision on the order's risk review; why it failed, if it did."""
        reason = "known customer, address checked" if decision == "release" else "card testing"
        answer = await self.http.post(
            f"/orders/{order_id}/holds/risk_review/{decision}", json={"reason": reason}
        )
        if answer.status_code in (200, 202):
            return None
        return f"review {decision} refused: HTTP {answer.status_code} {problem(answer)}"

    async def receive(self, sku: str, units: int, key: str) -> tuple[str | None, list[str]]:
        """Units of `sku` arrive at WH-EAST (a stock receipt): why it failed, if it did, and
        the backordered orders it served."""
        answer = await self.http.post(
            f"/products/{sku}/stock",
            json={"warehouse": "WH-EAST", "add": units},
            headers={"Idempotency-Key": key},
        )
        if answer.status_code == 200:
            return None, answer.json()["filled_orders"]
        if answer.status_code == 202:
            return None, []
        return f"stock receipt refused: HTTP {answer.status_code} {problem(answer)}", []


class Carrier:
    """Posts tracking webhooks, signed as the carrier signs them, with no API key."""

    def __init__(self, http: httpx.AsyncClient, secrets: list[str]) -> None:
        self.http = http
        self.secrets = secrets

    async def reports(self, tracking: str, status: CarrierStatus) -> str | None:
        """Post one tracking event, signed as the carrier signs; why it was refused, if it was."""
        event = {
            "event_id": f"evt_{tracking}_{status.value}",
            "tracking_number": tracking,
            "status": status.value,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        body = json.dumps(event).encode()  # the exact bytes that are signed and sent
        answer = await self.http.post(
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


def problem(response: httpx.Response) -> str:
    """The `detail` of an RFC 9457 problem answer, or the start of whatever else came back."""
    try:
        return str(response.json().get("detail") or response.text[:200])
    except ValueError:
        return response.text[:200]
