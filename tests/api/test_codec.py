"""The codec server over HTTP: Temporal's remote codec protocol, for operators only, with CORS
for the Temporal UI and a cookie session for the browser.

No Temporal server is needed: the codec endpoints touch only the codec.
"""

import base64
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf import json_format
from sqlalchemy import Engine
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client

from api.auth import CODEC_SESSION_COOKIE, Keyring, Principal, Role, new_codec_session
from api.main import create_app
from encryption import ENCODING, codec_from_settings
from models.orders import Address
from settings import DEV_API_KEYS, Settings
from tests.api.conftest import CLIENT_KEY, OPERATOR_KEY, assert_problem, bearer

KEY = base64.b64encode(os.urandom(32)).decode()
UI = "http://localhost:8233"
ADDRESS = Address(
    name="Ada Lovelace",
    line1="12 Analytical Way",
    city="Springfield",
    postal_code="62701",
    country="US",
)


def codec_settings(**changes: Any) -> Settings:
    values = {
        "api_keys": DEV_API_KEYS,
        "encryption_key": KEY,
        "encryption_key_id": "k7",
        "temporal_ui_port": 8233,
        "temporal_namespace": "default",
        "codec_cors_origins": None,
        **changes,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
async def codec_app(sqlite_engine: Engine) -> AsyncIterator[FastAPI]:
    app = create_app(codec_settings(), temporal_client=cast(Client, object()), engine=sqlite_engine)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(codec_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=codec_app), base_url="http://localhost:8000"
    ) as client:
        yield client


def plain_payloads() -> dict[str, Any]:
    """The order's address as the worker would write it, before the codec, in protobuf JSON."""
    data = ADDRESS.model_dump_json().encode()
    payload = Payload(metadata={"encoding": b"json/plain"}, data=data)
    return json_format.MessageToDict(Payloads(payloads=[payload]))


OPERATOR = {**bearer(OPERATOR_KEY), "X-Namespace": "default"}


async def test_encode_then_decode_round_trips(http: httpx.AsyncClient) -> None:
    plain = plain_payloads()
    encoded = await http.post("/codec/encode", json=plain, headers=OPERATOR)
    assert encoded.status_code == 200, encoded.text
    [sealed] = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == ENCODING
    assert base64.b64decode(sealed["metadata"]["encryption-key-id"]) == b"k7"
    assert b"Lovelace" not in base64.b64decode(sealed["data"])

    decoded = await http.post("/codec/decode", json=encoded.json(), headers=OPERATOR)
    assert decoded.status_code == 200, decoded.text
    assert decoded.json() == plain
    [opened] = decoded.json()["payloads"]
    assert Address.model_validate_json(base64.b64decode(opened["data"])) == ADDRESS


async def test_decode_opens_what_the_worker_sealed_and_passes_plain_payloads(
    http: httpx.AsyncClient,
) -> None:
    codec = codec_from_settings("k7", KEY, None)
    assert codec is not None
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"written before encryption"')
    [sealed] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"42")])
    body = json_format.MessageToDict(Payloads(payloads=[sealed, plain]))
    decoded = await http.post("/codec/decode", json=body, headers=OPERATOR)
    assert decoded.status_code == 200, decoded.text
    assert [base64.b64decode(p["data"]) for p in decoded.json()["payloads"]] == [
        b"42",
        b'"written before encryption"',
    ]
    # Unpadded base64, as protobuf JSON allows, is read too.
    unpadded = {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg"}, "data": "NDI"}]}
    assert (await http.post("/codec/decode", json=unpadded, headers=OPERATOR)).status_code == 200


async def test_payloads_it_cannot_open_are_422_naming_which(http: httpx.AsyncClient) -> None:
    stranger = codec_from_settings("k9", base64.b64encode(os.urandom(32)).decode(), None)
    assert stranger is not None
    [foreign] = await stranger.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    [ours] = await codec_from_settings("k7", KEY, None).encode(  # type: ignore[union-attr]
        [Payload(metadata={"encoding": b"json/plain"}, data=b"1")]
    )
    tampered = Payload()
    tampered.CopyFrom(ours)
    tampered.data = ours.data[:-1] + bytes([ours.data[-1] ^ 1])
    for bad in (foreign, tampered):
        body = json_format.MessageToDict(Payloads(payloads=[ours, bad]))
        response = await http.post("/codec/decode", json=body, headers=OPERATOR)
        problem = assert_problem(response, 422)
        assert problem["errors"] == [
            {"field": "payloads[1]", "reason": "cannot be decrypted with this server's keys"}
        ]
    not_base64 = {"payloads": [{"metadata": {"encoding": "anNvbg"}, "data": "a"}]}
    assert_problem(await http.post("/codec/decode", json=not_base64, headers=OPERATOR), 422)


async def test_another_namespace_is_refused(http: httpx.AsyncClient) -> None:
    headers = {**OPERATOR, "X-Namespace": "payments"}
    response = await http.post("/codec/decode", json=plain_payloads(), headers=headers)
    assert assert_problem(response, 422)["errors"][0]["field"] == "X-Namespace"


async def test_only_operators_may_use_it(http: httpx.AsyncClient) -> None:
    for path in ("/codec/encode", "/codec/decode"):
        missing = await http.post(path, json=plain_payloads())
        assert_problem(missing, 401)
        assert missing.headers["www-authenticate"].startswith("Bearer")
        bad = await http.post(path, json=plain_payloads(), headers=bearer("omk_unknown"))
        assert_problem(bad, 401)
        client = await http.post(path, json=plain_payloads(), headers=bearer(CLIENT_KEY))
        assert_problem(client, 403)


async def test_cors_lets_the_temporal_ui_call_it(http: httpx.AsyncClient) -> None:
    preflight = await http.options(
        "/codec/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    assert preflight.status_code == 200  # answered without any key
    assert preflight.headers["access-control-allow-origin"] == UI
    assert preflight.headers["access-control-allow-credentials"] == "true"
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "x-namespace"} <= {
        h.strip() for h in allowed.split(",")
    }
    assert "POST" in preflight.headers["access-control-allow-methods"]

    decoded = await http.post(
        "/codec/decode", json=plain_payloads(), headers={**OPERATOR, "Origin": UI}
    )
    assert decoded.status_code == 200
    assert decoded.headers["access-control-allow-origin"] == UI
    refused = await http.post("/codec/decode", json=plain_payloads(), headers={"Origin": UI})
    assert_problem(refused, 401)
    assert refused.headers["access-control-allow-origin"] == UI  # so the UI can say why


async def test_cors_is_for_the_ui_and_the_codec_only(http: httpx.AsyncClient) -> None:
    evil = await http.options(
        "/codec/decode",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers
    orders = await http.get("/orders", headers={**bearer(OPERATOR_KEY), "Origin": UI})
    assert "access-control-allow-origin" not in orders.headers


async def test_without_an_encryption_key_the_codec_is_the_identity(
    sqlite_engine: Engine,
) -> None:
    app = create_app(
        codec_settings(encryption_key=None),
        temporal_client=cast(Client, object()),
        engine=sqlite_engine,
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        for path in ("/codec/encode", "/codec/decode"):
            response = await http.post(path, json=plain_payloads(), headers=OPERATOR)
            assert response.json() == plain_payloads()


async def test_large_payloads_fit_but_not_without_bound(http: httpx.AsyncClient) -> None:
    big = Payload(metadata={"encoding": b"json/plain"}, data=b"x" * 1_000_000)
    body = json_format.MessageToDict(Payloads(payloads=[big]))
    assert (await http.post("/codec/encode", json=body, headers=OPERATOR)).status_code == 200
    huge = {"payloads": [{"data": "A" * (4 * 1024 * 1024)}]}
    assert_problem(await http.post("/codec/encode", json=huge, headers=OPERATOR), 413)


@pytest.mark.parametrize(
    "headers",
    [{}, bearer(CLIENT_KEY), bearer("omk_unknown"), {"Authorization": "Basic eA=="}],
    ids=["anonymous", "client", "unknown key", "malformed"],
)
async def test_only_an_operator_may_send_the_codec_a_large_body(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """Refused on its declared length, before a byte is parsed: 64 KiB unless an operator's."""
    body = json.dumps({"payloads": [{"data": "A" * (3 * 1024 * 1024)}]})
    for path in ("/codec/decode", "/codec/encode"):
        response = await http.post(
            path, content=body, headers={**headers, "Content-Type": "application/json"}
        )
        problem = assert_problem(response, 413)
        assert "65536 bytes" in problem["detail"]
    small = await http.post("/codec/decode", json=plain_payloads(), headers=headers)
    assert small.status_code in (401, 403)


async def test_a_signed_in_browser_may_send_a_large_body(http: httpx.AsyncClient) -> None:
    signed_in = await http.post(
        "/codec/session",
        content=f"key={OPERATOR_KEY}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    cookie = {"Cookie": f"{CODEC_SESSION_COOKIE}={signed_in.cookies[CODEC_SESSION_COOKIE]}"}
    big = Payload(metadata={"encoding": b"json/plain"}, data=b"x" * 1_000_000)
    body = json_format.MessageToDict(Payloads(payloads=[big]))
    assert (await http.post("/codec/encode", json=body, headers=cookie)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"a&a&a&a&a&a&a&a&a&a&a", b"key=" + b"&key=x" * 20, b"\xff\xfe=\x00"],
    ids=["many fields", "many keys", "not text"],
)
async def test_a_sign_in_body_that_is_not_the_form_is_refused_not_500(
    http: httpx.AsyncClient, body: bytes
) -> None:
    response = await http.post(
        "/codec/session",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code in (400, 401), response.text
    assert "set-cookie" not in response.headers


# ---- the browser session for the Temporal UI -------------------------------------------------


async def test_an_operator_signs_the_browser_in_and_the_ui_decodes_with_the_cookie(
    http: httpx.AsyncClient,
) -> None:
    form = await http.get("/codec/session")
    assert form.status_code == 200 and "<form" in form.text
    assert "default-src 'none'" in form.headers["content-security-policy"]

    signed_in = await http.post(
        "/codec/session",
        content=f"key={OPERATOR_KEY}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert signed_in.status_code == 200, signed_in.text
    cookie = signed_in.headers["set-cookie"]
    for attribute in ("HttpOnly", "Path=/codec", "SameSite=strict", "Max-Age=28800"):
        assert attribute.lower() in cookie.lower()
    assert OPERATOR_KEY not in cookie
    value = signed_in.cookies[CODEC_SESSION_COOKIE]

    ui = {"Origin": UI, "X-Namespace": "default", "Cookie": f"{CODEC_SESSION_COOKIE}={value}"}
    decoded = await http.post("/codec/decode", json=plain_payloads(), headers=ui)
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["access-control-allow-credentials"] == "true"
    # The cookie opens the codec and nothing else.
    assert_problem(await http.get("/orders", headers=ui), 401)


@pytest.mark.parametrize("key", [CLIENT_KEY, "omk_unknown", ""])
async def test_only_an_operator_key_signs_in(http: httpx.AsyncClient, key: str) -> None:
    response = await http.post(
        "/codec/session",
        content=f"key={key}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


async def test_forged_expired_and_revoked_sessions_are_refused(http: httpx.AsyncClient) -> None:
    operator = Principal("dev-operator", Role.OPERATOR)
    ours = Keyring(Settings(_env_file=None, api_keys=DEV_API_KEYS).api_key_entries)
    revoked = Keyring(
        Settings(_env_file=None, api_keys="omk_rotated_key:operator:dev-operator").api_key_entries
    )
    good = new_codec_session(ours, operator)
    name, expires, mac = good.rsplit(".", 2)
    for cookie in (
        new_codec_session(ours, operator, now=time.time() - 9 * 3600),  # expired
        new_codec_session(revoked, operator),  # signed by a key no longer listed
        f"{name}.{int(expires) + 3600}.{mac}",  # lifetime stretched
        f"dev-client.{expires}.{mac}",  # someone else's name
        "garbage",
        f"{name}.{expires}.zz",
    ):
        response = await http.post(
            "/codec/decode",
            json=plain_payloads(),
            headers={"Cookie": f"{CODEC_SESSION_COOKIE}={cookie}"},
        )
        assert_problem(response, 401)
    accepted = await http.post(
        "/codec/decode",
        json=plain_payloads(),
        headers={"Cookie": f"{CODEC_SESSION_COOKIE}={good}"},
    )
    assert accepted.status_code == 200, json.dumps(accepted.json())
