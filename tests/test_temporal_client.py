"""Waiting for Temporal at start-up: a worker started before its server waits for it, for a
bounded time, saying so in its log; past that bound it stops, saying why. And finding the
Temporal binaries that `make run`, the bench and the tests start."""

import asyncio
import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.testing import WorkflowEnvironment

from database import init_database
from settings import Settings
from temporal_client import TemporalUnreachable, connect_temporal, installed_binary
from tests.conftest import eventually, free_port, venv_binary

REPO = Path(__file__).resolve().parents[1]


def waits_logged(caplog: pytest.LogCaptureFixture, address: str) -> int:
    return sum(f"waiting for Temporal at {address} (attempt" in m for m in caplog.messages)


async def test_a_temporal_that_comes_up_late_is_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ordermill.temporal")
    port = free_port()
    address = f"127.0.0.1:{port}"
    connecting = asyncio.create_task(
        connect_temporal(Settings(temporal_address=address), wait=timedelta(seconds=60))
    )
    try:
        await eventually(
            lambda: asyncio.sleep(0, waits_logged(caplog, address)),
            lambda waits: waits >= 1 or connecting.done(),
            what="a line saying the connect waits",
        )
        assert not connecting.done(), connecting.exception()
        server = await WorkflowEnvironment.start_time_skipping(
            port=port, test_server_existing_path=venv_binary("temporal-test-server")
        )
        try:
            async with asyncio.timeout(30):
                client = await connecting
            # The server that came up answers, not merely something at that port.
            await client.workflow_service.get_system_info(GetSystemInfoRequest())
        finally:
            await server.shutdown()
    finally:
        connecting.cancel()


async def test_the_wait_is_bounded_and_says_what_it_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ordermill.temporal")
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(TemporalUnreachable) as failed:
        await connect_temporal(Settings(temporal_address=address), wait=timedelta(seconds=2))

    assert time.monotonic() - started < 10
    message = str(failed.value)
    assert address in message and "TEMPORAL_CONNECT_TIMEOUT (2 s" in message, message
    assert "Connection refused" in message, message
    assert waits_logged(caplog, address) >= 2


async def test_without_a_wait_an_unreachable_temporal_fails_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="Connection refused"):
        await connect_temporal(Settings(temporal_address=f"127.0.0.1:{free_port()}"))
    assert time.monotonic() - started < 5


def test_the_worker_process_gives_up_past_its_timeout_saying_so(tmp_path: Path) -> None:
    """`python worker.py` with TEMPORAL_CONNECT_TIMEOUT: the wait, then a clear end."""
    init_database(f"sqlite:///{tmp_path / 'ordermill.db'}").dispose()
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DATABASE_"))}
    env |= {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_CONNECT_TIMEOUT": "2",
        "DATA_DIR": str(tmp_path),
        "APP_ENV": "development",
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "worker.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"waiting for Temporal at {address} (attempt 1" in output, output
    assert f"worker not started: no Temporal at {address}" in output, output
    assert "Traceback" not in output, output


def test_temporal_binaries_are_found_beside_our_python_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin, on_path = tmp_path / "venv" / "bin", tmp_path / "elsewhere"
    for folder in (venv_bin, on_path):
        folder.mkdir(parents=True)
        (folder / "temporal").write_text("#!/bin/sh\n")
        (folder / "temporal").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", str(on_path))

    assert installed_binary("temporal") == str(venv_bin / "temporal")
    (venv_bin / "temporal").unlink()
    assert installed_binary("temporal") == str(on_path / "temporal")
    assert installed_binary("temporal-test-server") is None
