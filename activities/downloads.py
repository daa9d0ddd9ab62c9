"""Digital delivery: signed download links, and revoking them when a digital line is refunded.

The signing secret stays in the worker and the API; only the signed URL reaches an email.
"""

import hashlib
import hmac

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from temporalio import activity

from models.activities import RevokeDownloadsInput
from models.tables import RevokedDownload


class DownloadLinks:
    def __init__(self, base_url: str, secret: str) -> None:
        self._base_url = base_url.rstrip("/")
        self._secret = secret.encode()

    def signature(self, order_id: str, sku: str) -> str:
        digest = hmac.new(self._secret, f"{order_id}/{sku}".encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def url(self, order_id: str, sku: str) -> str:
        return f"{self._base_url}/downloads/{order_id}/{sku}?sig={self.signature(order_id, sku)}"

    def verify(self, order_id: str, sku: str, signature: str) -> bool:
        return hmac.compare_digest(self.signature(order_id, sku), signature)


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
