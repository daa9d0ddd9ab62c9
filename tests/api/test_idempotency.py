"""`Idempotency-Key` on POST /orders: one key, one order, one charge; a new body needs a new key.

Keys are per owner and expire: the table is purged by the API (api.idempotency).
"""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

import httpx
import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from temporalio.client import Client

from api.idempotency import KeyReused, claim, fingerprint, purge
from api.main import create_app
from models.tables import IdempotencyKey, OrderRecord, PaymentTransaction
from settings import DEV_API_KEYS, Settings
from tests.api.conftest import assert_problem, follow, has_status, order_body
from tests.conftest import E2EStack, eventually


def new_key() -> str:
    return str(uuid.uuid4())


async def new_customer(api: httpx.AsyncClient) -> str:
    response = await api.post(
        "/customers",
        json={
            "name": "Idem Potent",
            "email": "idem@example.com",
            "address": {
                "name": "Idem Potent",
                "line1": "1 Retry Road",
                "city": "Springfield",
                "postal_code": "62701",
                "country": "US",
            },
        },
    )
    customer_id: str = response.json()["id"]
    return customer_id


def authorizations(engine: Engine, order_id: str) -> int:
    with Session(engine) as session:
        return session.exec(
            select(func.count())
            .select_from(PaymentTransaction)
            .where(PaymentTransaction.order_id == order_id, PaymentTransaction.kind == "authorize")
        ).one()


async def test_same_key_and_body_return_the_same_order_and_charge_once(
    api: httpx.AsyncClient, e2e_stack: E2EStack
) -> None:
    key = new_key()
    first = await api.post("/orders", json=order_body(), headers={"Idempotency-Key": key})
    assert first.status_code == 202
    order_id = first.json()["order_id"]
    run_id = (await e2e_stack.client.get_workflow_handle(f"order-{order_id}").describe()).run_id

    # The same request again, with its JSON keys in another order: still the same request.
    body = json.dumps(dict(reversed(list(order_body().items()))))
    replay = await api.post(
        "/orders",
        content=body,
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert replay.status_code == 202
    assert replay.json()["order_id"] == order_id
    assert replay.headers["location"] == f"/orders/{order_id}"
    assert replay.headers["idempotent-replayed"] == "true"
    described = await e2e_stack.client.get_workflow_handle(f"order-{order_id}").describe()
    assert described.run_id == run_id

    await follow(api, order_id, has_status("shipped"))
    assert authorizations(e2e_stack.engine, order_id) == 1


async def test_same_key_with_a_different_body_is_409(api: httpx.AsyncClient) -> None:
    key = new_key()
    first = await api.post("/orders", json=order_body(), headers={"Idempotency-Key": key})
    assert first.status_code == 202
    changed = order_body(items=[{"sku": "BOOK-DUNE", "quantity": 2}])
    problem = assert_problem(
        await api.post("/orders", json=changed, headers={"Idempotency-Key": key}), 409
    )
    assert problem["type"].endswith("/idempotency-key-reused")
    assert first.json()["order_id"] in problem["detail"]


async def test_without_a_key_each_post_is_a_new_order(api: httpx.AsyncClient) -> None:
    first = await api.post("/orders", json=order_body())
    second = await api.post("/orders", json=order_body())
    assert first.json()["order_id"] != second.json()["order_id"]


async def test_a_concurrent_burst_with_one_key_creates_exactly_one_order(
    api: httpx.AsyncClient, e2e_stack: E2EStack
) -> None:
    customer_id = await new_customer(api)
    key = new_key()
    responses = await asyncio.gather(
        *(
            api.post(
                "/orders",
                json=order_body(customer_id=customer_id),
                headers={"Idempotency-Key": key},
            )
            for _ in range(10)
        )
    )
    assert [r.status_code for r in responses] == [202] * 10
    order_ids = {r.json()["order_id"] for r in responses}
    assert len(order_ids) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 9
    (order_id,) = order_ids

    with Session(e2e_stack.engine) as session:
        keys = session.exec(select(IdempotencyKey).where(IdempotencyKey.key == key)).all()
    assert [k.order_id for k in keys] == [order_id]

    await follow(api, order_id, has_status("shipped"))

    async def workflows() -> int:
        return (await e2e_stack.client.count_workflows(f"CustomerId = '{customer_id}'")).count

    assert await eventually(workflows, lambda n: n >= 1) == 1
    with Session(e2e_stack.engine) as session:
        records = session.exec(
            select(OrderRecord.order_id).where(OrderRecord.customer_id == customer_id)
        ).all()
    assert list(records) == [order_id]
    assert authorizations(e2e_stack.engine, order_id) == 1


async def test_one_key_from_two_callers_on_one_order_is_two_requests(
    api: httpx.AsyncClient, client_api: httpx.AsyncClient
) -> None:
    """The Update behind a keyed request is the caller's own too, not only the key's row."""
    order_id = (await client_api.post("/orders", json=order_body())).json()["order_id"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    url = f"/orders/{order_id}/inquiries"
    mine = await client_api.post(url, json={"message": "from the client"}, headers=key)
    theirs = await api.post(url, json={"message": "from the operator"}, headers=key)

    assert mine.status_code == theirs.status_code == 201, (mine.text, theirs.text)
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["message"] == "from the operator"


async def test_replaying_the_key_of_a_finished_order_answers_that_order(
    api: httpx.AsyncClient, e2e_stack: E2EStack
) -> None:
    key = new_key()
    body = order_body(payment={"token": "tok_chargeDeclined"})
    first = await api.post("/orders", json=body, headers={"Idempotency-Key": key})
    order_id = first.json()["order_id"]
    handle = e2e_stack.client.get_workflow_handle(f"order-{order_id}")
    await handle.result()  # declined orders end at once; a test may wait for that

    replay = await api.post("/orders", json=body, headers={"Idempotency-Key": key})
    assert replay.status_code == 202
    assert replay.json()["order_id"] == order_id
    assert replay.json()["status"] == "payment_declined"


@pytest.mark.parametrize("key", ["", "x" * 256, "has space"], ids=["empty", "too long", "space"])
async def test_a_malformed_key_is_422(api: httpx.AsyncClient, key: str) -> None:
    problem = assert_problem(
        await api.post("/orders", json=order_body(), headers={"Idempotency-Key": key}), 422
    )
    assert problem["errors"][0]["field"] == "Idempotency-Key"


TTL = timedelta(days=1)  # IDEMPOTENCY_KEY_TTL's default


def test_keys_are_kept_for_a_day_then_may_start_afresh(sqlite_engine: Engine) -> None:
    placed = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    first = claim(sqlite_engine, "shop", "k1", "body-a", "ord_a", TTL, now=placed)
    assert (first.order_id, first.replayed) == ("ord_a", False)

    almost_a_day = placed + TTL - timedelta(seconds=1)
    assert claim(sqlite_engine, "shop", "k1", "body-a", "ord_b", TTL, almost_a_day).replayed
    with pytest.raises(KeyReused):
        claim(sqlite_engine, "shop", "k1", "body-b", "ord_b", TTL, now=almost_a_day)

    after = placed + TTL + timedelta(seconds=1)
    fresh = claim(sqlite_engine, "shop", "k1", "body-b", "ord_c", TTL, now=after)
    assert (fresh.order_id, fresh.replayed) == ("ord_c", False)
    with Session(sqlite_engine) as session:
        assert session.exec(select(col(IdempotencyKey.order_id))).all() == ["ord_c"]


def test_keys_are_each_owners_own(sqlite_engine: Engine) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    mine = claim(sqlite_engine, "client-a", "k", "body", "ord_a", TTL, now=now)
    theirs = claim(sqlite_engine, "client-b", "k", "body", "ord_b", TTL, now=now)
    assert (mine.order_id, mine.replayed, theirs.order_id, theirs.replayed) == (
        "ord_a",
        False,
        "ord_b",
        False,
    )


def test_expired_keys_are_purged(engine: Engine) -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    claim(engine, "shop", "old", "body", "ord_old", TTL, now=now - TTL - timedelta(minutes=1))
    claim(engine, "shop", "new", "body", "ord_new", TTL, now=now - TTL + timedelta(minutes=1))
    assert purge(engine, TTL, now=now) == 1
    with Session(engine) as session:
        assert session.exec(select(col(IdempotencyKey.key))).all() == ["new"]


def test_a_fingerprint_covers_the_operation_and_the_body() -> None:
    from models.orders import CancelRequest

    body = CancelRequest(reason="x")
    assert fingerprint("POST /orders/a/cancel", body) == fingerprint("POST /orders/a/cancel", body)
    assert fingerprint("POST /orders/a/cancel", body) != fingerprint("POST /orders/b/cancel", body)
    assert fingerprint("POST /orders/a/cancel", body) != fingerprint(
        "POST /orders/a/cancel", CancelRequest(reason="y")
    )


async def test_the_api_purges_expired_keys_when_it_starts(sqlite_engine: Engine) -> None:
    now = datetime.now(UTC)
    claim(sqlite_engine, "shop", "stale", "body", "ord_old", TTL, now=now - TTL * 2)
    claim(sqlite_engine, "shop", "fresh", "body", "ord_new", TTL, now=now)
    settings = Settings(_env_file=None, api_keys=DEV_API_KEYS, idempotency_key_ttl=TTL)
    app = create_app(settings, temporal_client=cast(Client, object()), engine=sqlite_engine)

    async def keys() -> list[str]:
        with Session(sqlite_engine) as session:
            return list(session.exec(select(col(IdempotencyKey.key))))

    async with app.router.lifespan_context(app):
        assert await eventually(keys, lambda found: found == ["fresh"], within=5)
