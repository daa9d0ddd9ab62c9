"""Digital delivery: signed download links, and revoking them when a digital line is refunded.

The signing secret stays in the worker and the API; only the signed URL reaches an email. A
link carries its expiry (`expires`, unix seconds) inside the signed message, so the API checks
it without knowing DOWNLOAD_LINK_TTL, and changing it breaks the signature.
"""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from temporalio import activity

from models.activities import RevokeDownloadsInput
from models.tables import RevokedDownload


class DownloadLinks:
    """Signs download links (given a `ttl`: the worker's Mailer) and checks them (the API)."""

    def __init__(self, base_url: str, secret: str, *, ttl: timedelta | None = None) -> None:
        if ttl is not None and ttl <= timedelta(0):
            raise ValueError("a download link's ttl must be positive")
        self._base_url = base_url.rstrip("/")
        self._secret = secret.encode()
        self._ttl = ttl

    def expires(self, issued_at: datetime) -> int:
        """The expiry, in unix seconds, of a link issued at `issued_at`."""
        if self._ttl is None:
            raise ValueError("these DownloadLinks only verify: give them a ttl to issue links")
        if issued_at.tzinfo is None:  # ordermill's times are UTC; never the host's local time
            issued_at = issued_at.replace(tzinfo=UTC)
        return int((issued_at + self._ttl).timestamp())

    def signature(self, order_id: str, sku: str, expires: int) -> str:
        message = f"{order_id}/{sku}/{expires}".encode()  # neither id nor SKU may hold a '/'
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def url(self, order_id: str, sku: str, *, issued_at: datetime) -> str:
        """The link, the same for the same `issued_at`: a re-sent email carries the same one."""
        expires = self.expires(issued_at)
        signature = self.signature(order_id, sku, expires)
        return f"{self._base_url}/downloads/{order_id}/{sku}?sig={signature}&expires={expires}"

    def verify(self, order_id: str, sku: str, expires: int, signature: str) -> bool:
        """Whether the link was signed with this secret; whether it has expired is apart."""
        return hmac.compare_digest(self.signature(order_id, sku, expires), signature)


class DownloadActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name="revoke_downloads")
    def revoke_downloads(self, request: RevokeDownloadsInput) -> int:
        """Stop the order's download links for these SKUs; returns how many were newly revoked."""
        revoked = 0
        for sku in request.skus:
            with Session(self._engine) as session:
                if session.get(RevokedDownload, (request.order_id, sku)) is not None:
                    continue
                session.add(RevokedDownload(order_id=request.order_id, sku=sku))
                try:
                    session.commit()
                    revoked += 1
                except IntegrityError:
                    session.rollback()
        return revoked
