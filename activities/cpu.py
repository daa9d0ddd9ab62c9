"""The CPU each step of ordermill's own costs the worker, as metrics: where its CPU goes.

A sync activity's body, and an email's delivery, run start to end in one of the worker's
threads, so that thread's CPU time over the run is their cost, the database driver's work
included: SQLite and psycopg run with the GIL released, where a profiler sampling the GIL
does not see them. The SDK's own cost per step (polling, converting, completing) is not in it.
"""

import functools
import inspect
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

ACTIVITY_CPU = "ordermill_activity_cpu"
EMAIL_CPU = "ordermill_email_delivery_cpu"
# From a cached lookup (0.2 ms) to a step that is far too slow (1 s).
CPU_BUCKETS_SECONDS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)

R = TypeVar("R")


class ActivityCpuInterceptor(Interceptor):
    """Records each sync activity's CPU in `ordermill_activity_cpu_seconds`, labelled with its
    activity type by the SDK's activity meter. Async activities share the event loop's thread
    with everything else, so their CPU cannot be told apart this way, and is not recorded."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TimedActivities(next)


class _TimedActivities(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if not _is_async(input.fn):
            input.fn = _timed(input.fn)
        return await self.next.execute_activity(input)


def _is_async(fn: Callable[..., Any]) -> bool:
    # As the SDK decides which activities run in its thread pool.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        fn.__call__  # type: ignore[operator]
    )


def _timed(fn: Callable[..., R]) -> Callable[..., R]:
    @functools.wraps(fn)
    def run(*args: Any) -> R:
        started = time.thread_time()
        try:
            return fn(*args)
        finally:
            _record(
                activity.metric_meter(),
                ACTIVITY_CPU,
                "CPU of one run of an activity's body, in its thread",
                time.thread_time() - started,
            )

    return run


def email_delivered(meter: MetricMeter, seconds: float) -> None:
    """One email's delivery attempt (claim, send, mark) took `seconds` of its thread's CPU."""
    _record(meter, EMAIL_CPU, "CPU of one email's delivery attempt, in its thread", seconds)


def _record(meter: MetricMeter, name: str, description: str, seconds: float) -> None:
    meter.create_histogram_timedelta(name, description, "duration").record(
        timedelta(seconds=seconds)
    )
