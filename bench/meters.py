"""What the bench's runs cost: each process's CPU and memory (with its children), and the
worker's CPU by step, read from its metrics, per order over a phase."""

import asyncio
import os

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from activities import cpu


class Meter:
    """CPU seconds and resident memory of the stack's processes (each with its children)
    and of the bench itself."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs: dict[str, psutil.Process] = {}
        for name, pid in {**pids, "bench": os.getpid()}.items():
            try:
                self.procs[name] = psutil.Process(pid)
            except psutil.Error:
                continue
        self.peak_rss: dict[str, float] = {}

    def _tree(self, name: str) -> list[psutil.Process]:
        proc = self.procs[name]
        if name == "bench":
            return [proc]  # its children are the stack, counted under their own names
        try:
            return [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> dict[str, float]:
        totals = {}
        for name in self.procs:
            total = 0.0
            for proc in self._tree(name):
                try:
                    times = proc.cpu_times()
                    total += times.user + times.system
                except psutil.Error:
                    continue
            totals[name] = total
        return totals

    def rss_mb(self) -> dict[str, float]:
        sizes = {}
        for name in self.procs:
            total = 0
            for proc in self._tree(name):
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            sizes[name] = total / 2**20
            self.peak_rss[name] = max(self.peak_rss.get(name, 0.0), sizes[name])
        return sizes

    async def watch_peaks(self, every: float = 1.0) -> None:
        """Sample RSS until cancelled, for the peaks."""
        while True:
            self.rss_mb()
            await asyncio.sleep(every)


def worker_step_cpu(metrics_url: str) -> dict[str, tuple[float, float]]:
    """The worker's CPU by step so far, from its metrics: {step: (runs, seconds)}."""
    return step_cpu_of(httpx.get(metrics_url, timeout=10.0).text)


def step_cpu_of(exposition: str) -> dict[str, tuple[float, float]]:
    """{step: (runs, seconds)} from a Prometheus exposition: each activity type by its name,
    and every email's delivery as `email delivery`."""
    by_step: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name not in (cpu.ACTIVITY_CPU, cpu.EMAIL_CPU):
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                at = 0
            elif sample.name.endswith("_sum"):
                at = 1
            else:
                continue
            step = (
                sample.labels.get("activity_type", "?")
                if family.name == cpu.ACTIVITY_CPU
                else "email delivery"
            )
            by_step.setdefault(step, [0.0, 0.0])[at] += sample.value
    return {step: (runs, seconds) for step, (runs, seconds) in by_step.items()}


def cpu_ms_per_order(before: dict[str, float], after: dict[str, float], done: int) -> dict:
    if not done:
        return {}
    return {name: round((after[name] - before[name]) * 1000 / done, 1) for name in after}


def step_cpu_per_order(
    before: dict[str, tuple[float, float]] | None,
    after: dict[str, tuple[float, float]] | None,
    done: int,
) -> dict[str, dict[str, float]] | None:
    """Each step's runs and CPU milliseconds per order over the phase, costliest first."""
    if before is None or after is None or not done:
        return None
    per_order = {}
    for name, (runs, seconds) in after.items():
        runs_before, seconds_before = before.get(name, (0.0, 0.0))
        per_order[name] = {
            "runs": round((runs - runs_before) / done, 2),
            "ms": round((seconds - seconds_before) * 1000 / done, 1),
        }
    return dict(sorted(per_order.items(), key=lambda item: -item[1]["ms"]))
