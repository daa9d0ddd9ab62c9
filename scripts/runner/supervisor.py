"""Keeps the children running, and stops them all, in order, on a signal or a failure.

A child that exits is started again after a back-off; one that keeps crashing within seconds of
starting makes the supervisor give up. The first Ctrl-C or SIGTERM stops every child, API and
worker first and Temporal last, each given its grace period before SIGKILL; a second kills them
at once.
"""

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from runner.output import log
from runner.process import STOP_GRACE, Child, exit_description

# A child that dies sooner than this after starting "crashed fast"; after MAX_FAST_CRASHES of
# those in a row the supervisor gives up instead of restarting it forever.
FAST_CRASH = 10.0
MAX_FAST_CRASHES = 5
MAX_BACKOFF = 30.0


class Fatal(Exception):
    """A reason to stop everything, said in words for the person at the terminal."""


@dataclass
class Restarts:
    fast_crashes: int = 0

    def after_exit(self, ran_for: float) -> float | None:
        """Seconds to wait before the next start, or None to give up."""
        self.fast_crashes = self.fast_crashes + 1 if ran_for < FAST_CRASH else 0
        if self.fast_crashes >= MAX_FAST_CRASHES:
            return None
        return min(MAX_BACKOFF, 2.0 ** max(0, self.fast_crashes - 1))


class Supervisor:
    """The children made with `child()`, kept running from `run(start)` until told to stop."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[Child] = []
        self.stopping = asyncio.Event()
        self.failure: str | None = None
        self._signals = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log(f"{sig.name}: stopping everything (again to kill at once)")
            self.stopping.set()
        else:
            log(f"{sig.name} again: killing everything now")
            for child in self.children:
                if child.running:
                    child.kill()

    def fail(self, reason: str) -> None:
        if self.failure is None and not self.stopping.is_set():
            self.failure = reason
            log(reason)
        self.stopping.set()

    def background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def child(self, name: str, argv: Sequence[str], grace: float = STOP_GRACE) -> Child:
        child = Child(name, argv, self.env, grace)
        self.children.append(child)
        return child

    async def run(self, start: Callable[[], Awaitable[None]]) -> int:
        """Start everything with `start` and supervise until stopped: 0 after a signal, 1 after
        a failure (a Fatal from `start`, or a child that kept crashing)."""
        startup = asyncio.create_task(self._start(start))
        await self.stopping.wait()
        startup.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await startup
        await self._stop_all()
        if self.failure:
            return 1
        log("stopped")
        return 0

    async def _start(self, start: Callable[[], Awaitable[None]]) -> None:
        try:
            await start()
        except Fatal as err:
            self.fail(str(err))

    async def keep_running(
        self,
        child: Child,
        *,
        restarting: str = "",
        started: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Start `child` again each time it exits, until stopping; `restarting` ends the line
        that says so, and `started` runs in the background after each restart."""
        restarts = Restarts()
        while True:
            code = await child.wait()
            if self.stopping.is_set():
                return
            ran_for = time.monotonic() - child.started_at
            delay = restarts.after_exit(ran_for)
            if delay is None:
                self.fail(
                    f"{child.name} crashed {MAX_FAST_CRASHES} times in a row, each within "
                    f"{FAST_CRASH:.0f}s of starting: giving up (see its log above)"
                )
                return
            log(
                f"{child.name} {exit_description(code)} after {ran_for:.1f}s; "
                f"restarting in {delay:.0f}s" + (f" {restarting}" if restarting else "")
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                return
            await child.start()
            if started is not None:
                self.background(started())

    async def _stop_all(self) -> None:
        # Temporal last: the worker's graceful shutdown still reports finished activities to it.
        apps = [c for c in self.children if c.name != "temporal"]
        await asyncio.gather(*(c.stop() for c in apps))
        await asyncio.gather(*(c.stop() for c in self.children if c.name == "temporal"))
