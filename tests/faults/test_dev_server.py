"""The fault suite's own dev server: it starts where it was told or says why not, and a test
that needs it fails at once, showing its state and log, when it is down."""

import socket
import time
from pathlib import Path

import pytest

from tests.faults.conftest import DevServer, Workers

pytestmark = pytest.mark.e2e


async def test_a_port_taken_before_the_first_start_moves_it_to_fresh_ones(
    tmp_path: Path,
) -> None:
    server = DevServer(tmp_path)
    taken = server.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            await server.first_start()
            assert server.port != taken
            assert f"start on 127.0.0.1:{taken}" in server.log.read_text()
            await server.connect()
        finally:
            server.stop()


async def test_a_port_taken_at_a_restart_fails_saying_so(tmp_path: Path) -> None:
    """A restart must come back where the workers look: it never moves."""
    server = DevServer(tmp_path)
    await server.first_start()
    try:
        server.kill()
        with socket.socket() as squatter:
            # SO_REUSEADDR: the killed server's connections linger on the port (TIME_WAIT).
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", server.port))
            squatter.listen()
            server.start()
            with pytest.raises(AssertionError) as failed:
                await server.answering()
        message = str(failed.value)
        assert "the dev server exited while starting" in message, message
        assert "exited with code" in message and "address already in use" in message, message
    finally:
        server.stop()


async def test_a_worker_waiting_on_a_dead_dev_server_fails_at_once_naming_it(
    dev_server: DevServer, workers: Workers
) -> None:
    workers.migrate()
    dev_server.kill()
    workers.start()  # it would wait TEMPORAL_CONNECT_TIMEOUT for the server to come back
    started = time.monotonic()
    with pytest.raises(AssertionError) as failed:
        await workers.polling()

    assert time.monotonic() - started < 10
    message = str(failed.value)
    assert "the dev server is down while worker 0 starts" in message, message
    assert "killed by SIGKILL" in message and "temporal.log" in message, message
    assert "worker-0.log" in message, message
