"""How the order calls each outside system: timeouts and retries, one place per system.

Business failures are raised non-retryable by the activities themselves, so these policies only
ever retry outages, and every one is bounded: past its bound the order is held for an operator
(workflows/holds.py), never retried forever. ordermill's own database runs as local
activities (no round trip through the server); the card processor, the warehouse and the
carrier stay remote activities, which need the server's queues, timeouts and heartbeats.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState

from activities.errors import DATA_REJECTED
from models.holds import HoldCode
from models.orders import Problem

Arg = TypeVar("Arg")
Result = TypeVar("Result")


@dataclass(frozen=True)
class System:
    start_to_close: timedelta
    retry: RetryPolicy
    heartbeat: timedelta | None = None


# ordermill's database, and the emails recorded with it: about 4 minutes of attempts, past a
# failover or a restart.
DATABASE = System(
    timedelta(seconds=30),
    RetryPolicy(
        initial_interval=timedelta(milliseconds=500),
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=12,
    ),
)
# The card processor: about 20 minutes.
PAYMENT = System(
    timedelta(seconds=30),
    RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(minutes=2),
        maximum_attempts=15,
    ),
)
# The carrier's booking API: about an hour.
CARRIER = System(
    timedelta(seconds=30),
    RetryPolicy(
        initial_interval=timedelta(seconds=2),
        maximum_interval=timedelta(minutes=5),
        maximum_attempts=15,
    ),
)
# Picking takes hours at worst; heartbeats notice a lost worker, and carry a cancel.
WAREHOUSE = System(
    timedelta(hours=4),
    RetryPolicy(
        initial_interval=timedelta(seconds=5),
        maximum_interval=timedelta(minutes=5),
        maximum_attempts=5,
    ),
    heartbeat=timedelta(seconds=10),
)
SUPPORT_MAIL = System(
    timedelta(seconds=30),
    RetryPolicy(
        initial_interval=timedelta(seconds=2),
        maximum_interval=timedelta(minutes=10),
        maximum_attempts=10,
    ),
)


def longest(system: System) -> timedelta:
    """The most a call to `system` can take: every attempt timing out, with every backoff."""
    retry = system.retry
    attempts = retry.maximum_attempts
    assert attempts > 0, "every policy here is bounded"
    backoff, waited = retry.initial_interval, timedelta(0)
    for _ in range(attempts - 1):
        waited += backoff
        backoff = min(backoff * retry.backoff_coefficient, retry.maximum_interval or backoff)
    return system.start_to_close * attempts + waited


# A local step's backoffs longer than this wait on a durable timer, not in the worker.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=2)


async def local(
    system: System, activity: Callable[[Any, Arg], Result], arg: Arg, summary: str
) -> Result:
    """One of ordermill's own quick steps, inside the order's workflow task."""
    return await workflow.execute_local_activity_method(
        activity,
        arg,
        start_to_close_timeout=system.start_to_close,
        retry_policy=system.retry,
        local_retry_threshold=LOCAL_RETRY_THRESHOLD,
        summary=summary,
    )


async def remote(
    system: System, activity: Callable[[Any, Arg], Result], arg: Arg, summary: str
) -> Result:
    """A call to an outside system, queued and timed by the server."""
    return await workflow.execute_activity_method(
        activity,
        arg,
        start_to_close_timeout=system.start_to_close,
        retry_policy=system.retry,
        summary=summary,
    )


def start_remote(
    system: System, activity: Callable[[Any, Arg], Awaitable[Result]], arg: Arg, summary: str
) -> workflow.ActivityHandle[Result]:
    """A long outside call the order may cancel (pick/pack); it waits for the cancel to land."""
    return workflow.start_activity_method(
        activity,
        arg,
        start_to_close_timeout=system.start_to_close,
        heartbeat_timeout=system.heartbeat,
        retry_policy=system.retry,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary=summary,
    )


def business_problem(err: BaseException, *error_types: str) -> Problem | None:
    """The reason behind an activity's non-retryable business failure of one of these types.

    A remote activity's failure arrives as an ActivityError around it, a local one's as itself.
    """
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type in error_types:
        code = str(cause.details[0]) if cause.details else (cause.type or "failed")
        return Problem(code=code, detail=cause.message)
    return None


def failure_code(
    err: BaseException, declined: dict[str, HoldCode] | None = None
) -> HoldCode | None:
    """The hold a step's final failure calls for; None for a business failure the caller
    handles itself (a declined card, no stock), which is never a reason to hold.

    A remote activity's failure arrives as an ActivityError around its cause, a local one's as
    the cause itself. Non-retryable failures are business answers; anything else that reached
    the workflow has run out of retries or time.
    """
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, CancelledError):
        return None  # the order cancelled the step itself
    if isinstance(cause, ApplicationError):
        if cause.type == DATA_REJECTED:
            return HoldCode.DATA_REJECTED
        if declined and cause.type in declined:
            return declined[cause.type]
        if cause.non_retryable:
            return None
    if isinstance(err, ActivityError) and err.retry_state is RetryState.NON_RETRYABLE_FAILURE:
        return None
    return HoldCode.RETRIES_EXHAUSTED
