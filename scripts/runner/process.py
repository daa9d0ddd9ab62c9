"""One supervised child process, in a process group of its own.

Stopping a child stops whatever it spawned, and the terminal's Ctrl-C reaches only the
supervisor, which decides when each child stops: SIGTERM, then SIGKILL after a grace period.
"""

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from runner.output import log, say

ROOT = Path(__file__).resolve().parents[2]  # the repository: the children run there
STOP_GRACE = 5.0  # seconds a child gets to exit after SIGTERM before it is killed

_PR_SET_PDEATHSIG = 1
try:
    _libc: ctypes.CDLL | None = (
        ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
    )
except OSError:
    _libc = None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: if the supervisor is SIGKILLed, the kernel
    sends the child SIGTERM, so not even that leaves a process behind (Linux only)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class Child:
    """One supervised process; its output is echoed line by line under its name."""

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], grace: float = STOP_GRACE
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.grace = grace
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            limit=1 << 20,
        )
        self.started_at = time.monotonic()
        self._pump = asyncio.create_task(self._echo(self.proc))

    async def _echo(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # a line longer than the limit: show it in pieces
                raw = await proc.stdout.read(1 << 16)
            if not raw:
                return
            say(self.name, raw.decode(errors="replace").rstrip())

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait(self) -> int:
        """The exit code, once the process has exited and all its output is shown."""
        assert self.proc is not None and self._pump is not None
        code = await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._pump), 2.0)
        return code

    async def stop(self) -> None:
        """SIGTERM to the child's process group, SIGKILL after its grace period."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), self.grace)
            except TimeoutError:
                log(f"{self.name} did not stop within {self.grace:.0f}s: killing it")
        # Anything the child left in its group (it should leave nothing) goes too.
        self._signal_group(signal.SIGKILL)
        await self.wait()

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def exit_description(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
