"""The ports `make run` will listen on, checked before anything starts: a busy one is named
with the setting that moves it, instead of a child crashing on it over and over."""

import errno
import socket
from collections.abc import Sequence

from settings import Settings


def ports_to_check(settings: Settings, *, own_temporal: bool) -> list[tuple[str, str, int]]:
    """(setting, host, port) for each port that must be free."""
    ports = [("API_PORT", settings.api_host, settings.api_port)]
    if settings.worker_metrics_address:
        host, _, port = settings.worker_metrics_address.rpartition(":")
        ports.append(("WORKER_METRICS_ADDRESS", host, int(port)))
    if own_temporal:
        ports += [
            ("TEMPORAL_PORT", "127.0.0.1", settings.temporal_port),
            ("TEMPORAL_UI_PORT", "127.0.0.1", settings.temporal_ui_port),
        ]
    return ports


def port_in_use(host: str, port: int) -> bool:
    """True if something listens on host:port (binding is refused)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port left in TIME_WAIT by our own last run is free to use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def moved(setting: str, host: str, port: int) -> str:
    """The setting's value for another port: an address keeps its host."""
    return f"{host}:{port}" if setting.endswith("_ADDRESS") else str(port)


def check_ports(ports: Sequence[tuple[str, str, int]]) -> list[str]:
    """One sentence per busy port, naming the setting that moves it."""
    problems = []
    for setting, host, port in ports:
        if port_in_use(host, port):
            problems.append(
                f"port {port} is already in use ({setting}): stop whatever uses it "
                f"(`ss -ltnp 'sport = :{port}'` shows it) or choose another port, "
                f"e.g. `{setting}={moved(setting, host, port + 10000)} make run`"
            )
            if setting == "TEMPORAL_PORT":
                problems.append(
                    f"  if a Temporal server you want to use listens on {port}, use it: "
                    f"`TEMPORAL_ADDRESS=localhost:{port} make run`"
                )
    return problems
