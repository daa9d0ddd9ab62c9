"""Encryption end to end: with ENCRYPTION_KEY set, the history the Temporal server stores holds
no customer email, name or address line in clear text, and the codec server reads it back for
an operator.

A dev server of its own (the shared one runs without a codec), a worker and the API built from
one set of settings with a key, and a database in a temporary directory. The order goes in
through HTTP as a client would place it; its history comes out through a client with no codec,
as anyone with access to the Temporal server would see it. Sealed histories, and the
committed ones from before encryption, replay on today's workflow with the codec on.
"""

import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import PayloadCodec
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api.main import create_app
from database import init_database
from encryption import ENCODING, codec_from_settings, data_converter
from models.orders import OrderStatus
from models.wire import SEARCH_ATTRIBUTES, order_workflow_id
from settings import DEV_API_KEYS, Settings
from tests.api.conftest import (
    CLIENT_KEY,
    OPERATOR_KEY,
    assert_problem,
    follow,
    has_status,
    http_client,
)
from tests.conftest import venv_binary
from tests.test_replay import HISTORIES
from worker import build_worker
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.e2e


@dataclass
class EncryptedStack:
    env: WorkflowEnvironment
    app: FastAPI
    codec: PayloadCodec


@pytest.fixture(scope="module")
async def encrypted(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EncryptedStack]:
    key = base64.b64encode(os.urandom(32)).decode()
    codec = codec_from_settings("e2e-1", key, None)
    assert codec is not None
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        data_converter=data_converter(codec),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    data_dir: Path = tmp_path_factory.mktemp("encrypted-data")
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        temporal_address=env.client.service_client.config.target_host,
        temporal_namespace=env.client.namespace,
        encryption_key=key,
        encryption_key_id="e2e-1",
        api_keys=DEV_API_KEYS,
        fulfillment_delay=timedelta(seconds=1),
        activity_threads=8,
    )
    db = init_database(settings.effective_database_url)
    app = create_app(settings, temporal_client=env.client, engine=db)
    try:
        with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
            async with (
                build_worker(env.client, settings, db, executor),
                app.router.lifespan_context(app),
            ):
                yield EncryptedStack(env=env, app=app, codec=codec)
    finally:
        db.dispose()
        await env.shutdown()


def payloads_of(events: list[HistoryEvent]) -> list[Payload]:
    """Every Payload anywhere in the events (inputs, results, signals, updates, ...)."""
    found: list[Payload] = []

    def walk(message: Message) -> None:
        if isinstance(message, Payload):
            found.append(message)
            return
        for _, value in message.ListFields():
            if isinstance(value, Message):
                walk(value)
            elif not isinstance(value, str | bytes | int | float | bool):
                # A repeated field or a map (protobuf's containers are not typed as such).
                for item in value.values() if hasattr(value, "values") else value:
                    if isinstance(item, Message):
                        walk(item)

    for event in events:
        walk(event)
    return found


async def test_the_stored_history_has_no_plain_pii_and_the_codec_server_reads_it(
    encrypted: EncryptedStack,
) -> None:
    tag = uuid.uuid4().hex[:10]
    email = f"enid.{tag}@example.com"
    name = f"Enid Cipher-{tag}"
    line1 = f"{int(tag[:4], 16)} Ciphertext Lane {tag}"
    async with (
        http_client(encrypted.app, OPERATOR_KEY) as operator,
        http_client(encrypted.app, CLIENT_KEY) as client,
    ):
        history = await check_history_and_codec(encrypted.env, operator, client, email, name, line1)
    # The sealed history replays on today's workflow, given the key.
    replayer = Replayer(workflows=[OrderWorkflow], data_converter=data_converter(encrypted.codec))
    await replayer.replay_workflow(history)


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_histories_from_before_encryption_replay_with_it_on(name: str) -> None:
    """Orders started before ENCRYPTION_KEY was set keep running once it is."""
    codec = codec_from_settings("k1", base64.b64encode(os.urandom(32)).decode(), None)
    history = WorkflowHistory.from_json(f"order-{name}", HISTORIES[name])
    replayer = Replayer(workflows=[OrderWorkflow], data_converter=data_converter(codec))
    await replayer.replay_workflow(history)


async def check_history_and_codec(
    env: WorkflowEnvironment,
    operator: httpx.AsyncClient,
    client: httpx.AsyncClient,
    email: str,
    name: str,
    line1: str,
) -> WorkflowHistory:
    created = await operator.post(
        "/customers",
        json={
            "name": name,
            "email": email,
            "address": {
                "name": name,
                "line1": line1,
                "city": "Springfield",
                "postal_code": "62701",
                "country": "US",
            },
        },
    )
    assert created.status_code == 201, created.text
    placed = await client.post(
        "/orders",
        json={
            "customer_id": created.json()["id"],
            "items": [{"sku": "BOOK-DUNE", "quantity": 1}],
            "payment": {"token": "tok_visa"},
        },
    )
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["order_id"]
    shipped = await follow(client, order_id, has_status("shipped"))
    assert shipped["shipping_address"]["line1"] == line1  # the API, with the key, reads it

    # What the server stores, as seen by anyone who can read the namespace: no codec.
    plain_client = await Client.connect(
        env.client.service_client.config.target_host, namespace=env.client.namespace
    )
    history = await plain_client.get_workflow_handle(order_workflow_id(order_id)).fetch_history()
    events = list(history.events)
    stored = b"".join(event.SerializeToString() for event in events)
    for secret in (email, name, line1, "Ciphertext Lane"):
        assert secret.encode() not in stored, f"{secret!r} is stored in clear text"

    started = events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encoding"] == ENCODING
    # Search attributes stay plain (they are indexed) and hold only status and customer id.
    assert set(started.search_attributes.indexed_fields) == {"OrderStatus", "CustomerId"}
    # Unsealed are only search attribute values and the SDK's own bookkeeping.
    unsealed = [
        json.loads(p.data) for p in payloads_of(events) if p.metadata.get("encoding") != ENCODING
    ]
    values = {v for v in unsealed if isinstance(v, str)}
    assert values <= {*OrderStatus, created.json()["id"]}, values
    bookkeeping = [v for v in unsealed if not isinstance(v, str)]
    for v in bookkeeping:  # a local activity's marker
        assert set(v) >= {"activity_type", "seq"}, v
    sealed = [p for p in payloads_of(events) if p.metadata.get("encoding") == ENCODING]
    assert len(sealed) > 5  # input, activity inputs and results, ...

    # The codec server, for an operator, opens them all: the Temporal UI's view of the order.
    body = json_format.MessageToDict(Payloads(payloads=sealed))
    decoded = await operator.post("/codec/decode", json=body, headers={"X-Namespace": "default"})
    assert decoded.status_code == 200, decoded.text
    opened = b"".join(base64.b64decode(p.get("data", "")) for p in decoded.json()["payloads"])
    for secret in (email, name, line1):
        assert secret.encode() in opened, f"{secret!r} was not decoded"
    assert all(
        base64.b64decode(p["metadata"]["encoding"]) != ENCODING for p in decoded.json()["payloads"]
    )
    # A client's key opens nothing.
    assert_problem(await client.post("/codec/decode", json=body), 403)
    return history
