"""The CPU each step of ordermill's own costs the worker, as metrics: where its CPU goes.

A sync activity's body, and an email's delivery, run start to end in one of the worker's
threads, so that thread's CPU time over the run is their cost, the database driver's work
included: SQLite and psycopg run with the GIL released, where a profiler sampling the GIL
does not see them. The SDK's own cost per step (polling, converting, completing) is not in it.
"""

import functools
import inspect
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

log = logging.getLogger("ordermill.cpu")

# Float seconds, named as exported: the SDK's duration histograms keep whole milliseconds,
# and most steps take less than one.
ACTIVITY_CPU = "ordermill_activity_cpu_seconds"
EMAIL_CPU = "ordermill_email_delivery_cpu_seconds"
# From a cached lookup (0.1 ms) to a step that is far too slow (1 s).
CPU_BUCKETS_SECONDS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 1.0)

R = TypeVar("R")


class ActivityCpuInterceptor(Interceptor):
    """Records each thread-pool activity's CPU in `ordermill_activity_cpu_seconds`, labelled
    with its activity type by the SDK's activity meter. Async activities share the event
    loop's thread with everything else, so their CPU cannot be told apart this way."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TimedActivities(next)


class _TimedActivities(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if isinstance(input.executor, ThreadPoolExecutor) and not _is_async(input.fn):
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
            spent = time.thread_time() - started
            _record(lambda: activity.metric_meter(), ACTIVITY_CPU, spent)

    return run


def email_delivered(meter: MetricMeter, seconds: float) -> None:
    """One email's delivery attempt (claim, send, mark) took `seconds` of its thread's CPU."""
    _record(lambda: meter, EMAIL_CPU, seconds)


DESCRIPTIONS = {
    ACTIVITY_CPU: "CPU of one run of an activity's body, in its thread",
    EMAIL_CPU: "CPU of one email's delivery attempt (claim, send, mark), in its thread",
}


def _record(meter: Callable[[], MetricMeter], name: str, seconds: float) -> None:
    # A metric is never worth a step's outcome: whatever recording raises is only logged.
    try:
        meter().create_histogram_float(name, DESCRIPTIONS[name]).record(seconds)
    except Exception:
        log.exception("could not record %s", name)
