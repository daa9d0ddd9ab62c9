"""The order-tracking link in every email: `/track/{order_id}?exp=...&sig=...`.

An HMAC over the order id and the expiry with TRACKING_LINK_SECRET (a secret of its own, so a
leaked download secret opens no order page). The expiry counts from the order's placement, so
every email of one order carries the same link; TRACKING_LINK_TTL (90 days) outlives delivery
and the return window.
"""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta


class TrackingLinks:
    """Signs tracking links (the worker's emails, `make demo`) and checks them (the API)."""

    def __init__(self, base_url: str, secret: str, ttl: timedelta) -> None:
        if ttl <= timedelta(0):
            raise ValueError("a tracking link's ttl must be positive")
        self._base_url = base_url.rstrip("/")
        self._secret = secret.encode()
        self._ttl = ttl

    def signature(self, order_id: str, expires: int) -> str:
        message = f"track\n{order_id}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def path(self, order_id: str, placed_at: datetime) -> str:
        if placed_at.tzinfo is None:  # ordermill's times are UTC
            placed_at = placed_at.replace(tzinfo=UTC)
        expires = int((placed_at + self._ttl).timestamp())
        return f"/track/{order_id}?exp={expires}&sig={self.signature(order_id, expires)}"

    def url(self, order_id: str, placed_at: datetime) -> str:
        return self._base_url + self.path(order_id, placed_at)

    def valid(self, order_id: str, expires: int, signature: str, now: datetime) -> bool:
        """Signed with this secret and not expired: anything else is no order at all."""
        signed = hmac.compare_digest(self.signature(order_id, expires), signature)
        return signed and now.timestamp() < expires
