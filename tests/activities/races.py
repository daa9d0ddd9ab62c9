"""Concurrent attempts for the activity tests: a business failure is one racer's outcome."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from temporalio.exceptions import ApplicationError

T = TypeVar("T")


def race(racers: int, attempt: Callable[[int], T]) -> list[T | ApplicationError]:
    """Run `attempt(0..racers-1)` at once on threads; each one's result or business failure."""
    start = threading.Barrier(racers)

    def run(n: int) -> T | ApplicationError:
        start.wait()
        try:
            return attempt(n)
        except ApplicationError as failure:
            return failure

    with ThreadPoolExecutor(max_workers=racers) as pool:
        return list(pool.map(run, range(racers)))
