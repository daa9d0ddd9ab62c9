"""`Idempotency-Key`: one key, one outcome, however often or concurrently a request is sent.

Keys are scoped to their owner, the API principal's name: two clients may use the same key
without meeting, and no client can claim, replay or learn about another's. A key stands for
one request, its operation (`POST /orders`, `POST /orders/{id}/refunds`, ...) and its body: the
same key with anything else is refused (`KeyReused`, a 409), on every endpoint.

A key is claimed in the `idempotencykey` table, whose primary key (owner, key) decides every
race: the first request inserts (fingerprint, order id); any other request with the key reads
that row. What a replay then does depends on the operation:

- POST /orders "starts" the same order id again, which the workflow id turns into the
  existing order;
- an Update on an order is sent again with the same Update id (`update_id`), which Temporal
  answers with the first request's outcome instead of running it twice.

The row is written before Temporal is called, so a request that dies between the two leaves a
key whose retry does the work. Keys are honoured for IDEMPOTENCY_KEY_TTL (a day by default);
the API deletes older rows when it starts and every hour after (`purge_periodically`), and an
expired key that is sent again starts afresh.
"""

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from anyio import to_thread
from pydantic import BaseModel
from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col

from models.tables import IdempotencyKey

log = logging.getLogger("ordermill.api.idempotency")

KEY_HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # printable ASCII, like Stripe's
PURGE_EVERY = timedelta(hours=1)


class KeyReused(Exception):
    """The key was already used, by the same owner, for a different request."""

    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id


@dataclass(frozen=True)
class Claim:
    order_id: str
    replayed: bool  # True when the key had been seen before: answer with its outcome


def fingerprint(operation: str, body: BaseModel | None) -> str:
    """The same request always hashes the same, whatever its JSON spacing or key order."""
    canonical = body.model_dump_json() if body is not None else ""
    return hashlib.sha256(f"{operation}\n{canonical}".encode()).hexdigest()


def update_id(update: str, owner: str, key: str) -> str:
    """The Temporal Update id a key stands for: the same for every retry by its owner."""
    digest = hashlib.sha256(f"{owner}\n{key}".encode()).hexdigest()[:32]
    return f"{update}:{digest}"


def claim(
    engine: Engine,
    owner: str,
    key: str,
    body_fingerprint: str,
    order_id: str,
    ttl: timedelta,
    now: datetime | None = None,
) -> Claim:
    """The order this key stands for: `order_id` if the key is new to its owner (or expired).

    Raises KeyReused when the owner used the key for another request.
    """
    now = now or datetime.now(UTC)
    with Session(engine) as session:
        reclaimed = session.execute(
            update(IdempotencyKey)
            .where(
                col(IdempotencyKey.owner) == owner,
                col(IdempotencyKey.key) == key,
                col(IdempotencyKey.created_at) < now - ttl,
            )
            .values(fingerprint=body_fingerprint, order_id=order_id, created_at=now)
        )
        if reclaimed.rowcount == 1:  # type: ignore[attr-defined]
            session.commit()
            return Claim(order_id=order_id, replayed=False)

        row = session.get(IdempotencyKey, (owner, key))
        if row is None:
            session.add(
                IdempotencyKey(
                    owner=owner,
                    key=key,
                    fingerprint=body_fingerprint,
                    order_id=order_id,
                    created_at=now,
                )
            )
            try:
                session.commit()
                return Claim(order_id=order_id, replayed=False)
            except IntegrityError:  # another request claimed it first: answer with its outcome
                session.rollback()
                row = session.get(IdempotencyKey, (owner, key))
                if row is None:
                    raise
        if row.fingerprint != body_fingerprint:
            raise KeyReused(row.order_id)
        return Claim(order_id=row.order_id, replayed=True)


def purge(engine: Engine, ttl: timedelta, now: datetime | None = None) -> int:
    """Delete the keys older than `ttl`; how many went."""
    cutoff = (now or datetime.now(UTC)) - ttl
    with Session(engine) as session:
        result = session.execute(
            delete(IdempotencyKey).where(col(IdempotencyKey.created_at) < cutoff)
        )
        session.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]


async def purge_periodically(
    engine: Engine, ttl: timedelta, every: timedelta = PURGE_EVERY
) -> None:
    """Run by the API for as long as it serves: a purge now, then one every `every`.

    Several API processes each purge; the DELETE is the same whoever runs it.
    """
    while True:
        try:
            purged = await to_thread.run_sync(purge, engine, ttl)
            if purged:
                log.info("purged %d idempotency keys older than %s", purged, ttl)
        except SQLAlchemyError as err:  # the database is away: try again next time
            log.warning("could not purge expired idempotency keys: %s", err)
        await asyncio.sleep(every.total_seconds())
