"""`Idempotency-Key` for POST /orders: one key, one order, however often or concurrently it is sent.

A key is claimed in the `idempotencykey` table, whose primary key decides every race: the first
request inserts (key, body fingerprint, new order id) and starts that order; any other request
with the key reads the row and, if its body is the same, "starts" the same order id again, which
the workflow id (USE_EXISTING) turns into the existing order. A different body is refused.

The row is written before the workflow starts, so a request that dies between the two leaves
a key whose retry starts the order. Keys are honoured for `KEY_TTL`; after that the key may be
reused for a new order (the expired row is reclaimed atomically, in the same way).
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from models.http import PlaceOrderRequest
from models.tables import IdempotencyKey

KEY_TTL = timedelta(hours=24)
KEY_HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # printable ASCII, like Stripe's


class KeyReused(Exception):
    """The key was already used with a different request body."""

    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id


@dataclass(frozen=True)
class Claim:
    order_id: str
    replayed: bool  # True when the key had been seen before: answer with its order


def fingerprint(request: PlaceOrderRequest, owner: str = "") -> str:
    """The same request always hashes the same, whatever its JSON spacing or key order.

    The owner (the API principal) is part of it: another client sending the same key and body
    is refused, never handed the first client's order.
    """
    return hashlib.sha256(f"{owner}\n{request.model_dump_json()}".encode()).hexdigest()


def claim(
    engine: Engine, key: str, body_fingerprint: str, new_order_id: str, now: datetime | None = None
) -> Claim:
    """The order this key stands for: `new_order_id` if the key is new (or expired)."""
    now = now or datetime.now(UTC)
    with Session(engine) as session:
        reclaimed = session.execute(
            update(IdempotencyKey)
            .where(col(IdempotencyKey.key) == key, col(IdempotencyKey.created_at) < now - KEY_TTL)
            .values(fingerprint=body_fingerprint, order_id=new_order_id, created_at=now)
        )
        if reclaimed.rowcount == 1:  # type: ignore[attr-defined]
            session.commit()
            return Claim(order_id=new_order_id, replayed=False)

        row = session.get(IdempotencyKey, key)
        if row is None:
            session.add(
                IdempotencyKey(
                    key=key, fingerprint=body_fingerprint, order_id=new_order_id, created_at=now
                )
            )
            try:
                session.commit()
                return Claim(order_id=new_order_id, replayed=False)
            except IntegrityError:  # another request claimed it first: answer with its order
                session.rollback()
                row = session.get(IdempotencyKey, key)
                if row is None:
                    raise
        if row.fingerprint != body_fingerprint:
            raise KeyReused(row.order_id)
        return Claim(order_id=row.order_id, replayed=True)
