"""Schemathesis against the running API: the OpenAPI document is the contract, and the app
must keep it for whatever a client or an operator sends.

The real app runs under uvicorn on a free port, on the e2e stack's dev server, worker and
database, with the development keys. `schemathesis run` then reads its /openapi.json and,
once with a client key and once with an operator key, sends the schema's examples, its
coverage cases (each constraint's edges, each field missing or of the wrong type, unsupported
methods, requests without the key) and generated requests, with a fixed seed and a bounded
number of examples per operation. Every response must be a non-5xx whose status, content type,
headers and body the document declares; invalid requests must be refused. Some path ids are
those of a real, delivered order (tests/api/schemathesis_hooks.py), so the order's own
refusals are reached as well as its 404s.

A failure prints schemathesis' report: each failing check with a `curl` that reproduces it
(`pytest -rP` shows the summary of a passing run). About 25 s per role on two cores.
"""

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from settings import DEV_API_KEYS
from tests.api.conftest import (
    CLIENT_KEY,
    OPERATOR_KEY,
    carrier_event,
    follow,
    has_status,
    place,
    post_event,
)
from tests.conftest import E2EStack, eventually, free_port

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261201
MAX_EXAMPLES = 15  # per operation and phase: about 25 s per role on two cores
RUN_TIMEOUT = 240.0
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
        "ignored_auth",
    ]
)


def schemathesis_cli() -> str:
    beside = Path(sys.executable).parent / "schemathesis"
    found = str(beside) if beside.exists() else shutil.which("schemathesis")
    if not found:
        pytest.fail("schemathesis is not installed: run `make test`, which installs it")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the developer's own ordermill or Temporal settings."""
    ours = ("TEMPORAL_", "DATABASE_URL", "SMTP_", "ENCRYPTION_", "API_", "APP_ENV", "CARRIER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return env | extra


@pytest.fixture(scope="module")
async def live_api(
    e2e_stack: E2EStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The real app under uvicorn, on the stack's database and Temporal."""
    port = free_port()
    log = tmp_path_factory.mktemp("fuzz-api") / "api.log"
    settings = e2e_stack.settings
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "uvicorn", "api.main:app", "--app-dir", str(ROOT)),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            cwd=log.parent,  # no stray .env of the developer's
            env=clean_env(
                DATA_DIR=str(settings.data_dir),
                TEMPORAL_ADDRESS=settings.temporal_address,
                API_KEYS=DEV_API_KEYS,
                UPDATE_WAIT="2",
                PYTHONUNBUFFERED="1",
            ),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as http:

            async def ready() -> bool:
                if process.returncode is not None:
                    raise AssertionError(f"the API exited:\n{log.read_text()[-3000:]}")
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, bool, within=30, interval=0.2)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 15)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-5000:]


@pytest.fixture(scope="module")
async def delivered_order(client_api: httpx.AsyncClient, webhook_secret: str) -> str:
    """Client A's delivered order: returns, feedback, questions and refunds reach its workflow."""
    order_id = str(
        (await place(client_api, items=[{"sku": "BOOK-DUNE", "quantity": 2}]))["order_id"]
    )
    shipped = await follow(client_api, order_id, has_status("shipped"))
    tracking = shipped["shipments"][0]["tracking_number"]
    event = carrier_event(tracking, "delivered")
    assert (await post_event(client_api, event, webhook_secret)).status_code == 200
    await follow(client_api, order_id, has_status("delivered"))
    return order_id


@pytest.mark.parametrize("key", [CLIENT_KEY, OPERATOR_KEY], ids=["client", "operator"])
async def test_the_api_keeps_its_openapi_contract(
    live_api: str, delivered_order: str, key: str, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        schemathesis_cli(),
        "run",
        f"{live_api}/openapi.json",
        *("--header", f"Authorization: Bearer {key}"),
        *("--checks", CHECKS),
        *("--phases", "examples,coverage,fuzzing"),
        *("--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES)),
        # One worker: CPython 3.11 can fail hypothesis' source inspection in two threads at once
        # ("AST constructor recursion depth mismatch"), and the work is CPU-bound anyway.
        *("--generation-database", "none", "--no-shrink", "--workers", "1"),
        *("--request-timeout", "15", "--max-failures", "20"),
        "--no-color",
        cwd=tmp_path,
        env=clean_env(
            SCHEMATHESIS_HOOKS="tests.api.schemathesis_hooks",
            ORDERMILL_FUZZ_ORDERS=delivered_order,
            PYTHONPATH=str(ROOT),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"schemathesis ran past {RUN_TIMEOUT:.0f} s") from None
    report = output.decode(errors="replace")
    print(report[-3000:])  # the summary: shown with `pytest -rP`, and on failure
    assert process.returncode == 0, report[-25_000:]
    assert "passed" in report.lower() or "no issues found" in report.lower(), report[-5000:]
