"""`make bench` in miniature, so the benchmark never rots: its own stack on free ports, three
orders of each kind, five open orders, on two worker processes (pinned to CPUs where it can).
It checks that every figure is written (the order's steps, bare, included), that no order took
effect twice, and that the process exits 0, leaving no process of its stack behind; it never
looks at how fast anything was.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
CAN_PIN = shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2

FIGURES = [
    "ceiling.orders_per_s",
    "ceiling.start_ms.p50",
    "ceiling.start_ms.p99",
    "ceiling.delivered_ms.p50",
    "ordermill.orders_per_s",
    "ordermill.post_orders_ms.p50",
    "ordermill.post_orders_ms.p99",
    "ordermill.delivered_ms.p50",
    "ordermill.delivered_ms.p99",
    "ordermill.polls_per_order",
    "ordermill.cpu_ms_per_order.worker",
    "steps.orders_per_s",
    "steps.worker_cpu_ms_per_order",
    "ratios.worker_cpu_over_steps",
    "ratios.server_cpu",
    "ratios.orders_per_s",
    "ratios.start_p50",
    "open_orders.worker_rss_mb",
    "open_orders.server_rss_mb",
    "open_orders.api_rss_mb",
    "open_orders.delivery_ms.p50",
    "open_orders.delivery_ms.p99",
]


def figure(results: dict[str, object], dotted: str) -> object:
    value: object = results
    for part in dotted.split("."):
        assert isinstance(value, dict), f"{dotted}: no {part!r} in {value!r}"
        value = value.get(part)
    return value


@pytest.mark.e2e
def test_bench_runs_end_to_end_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench"),
            *("--orders", "3", "--concurrency", "2", "--open-orders", "5"),
            *("--warmup", "1", "--sample", "3", "--out", str(out)),
            "--workers",
            "2",
            *(["--pin"] if CAN_PIN else []),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, output
    assert "orders/s" in done.stdout, output

    results = json.loads((out / "results.json").read_text())
    missing = [name for name in FIGURES if not isinstance(figure(results, name), int | float)]
    assert not missing, f"figures missing from results.json: {missing}\n{output}"
    assert results["ordermill"]["done"] == 3
    assert results["steps"]["done"] == 3 and results["steps"]["failed"] == 0
    assert results["open_orders"]["count"] == 5
    assert [t["met"] for t in results["targets"]].count(None) == 0
    assert (out / "latency.png").stat().st_size > 0

    assert results["config"]["workers"] == 2 and results["config"]["pinned"] is CAN_PIN
    assert results["double_effects"] == {
        "orders_authorized_twice": 0,
        "parcels_captured_twice": 0,
        "lines_committed_twice": 0,
    }
    stack = results["config"]["pids"] | {"steps worker": results["config"]["steps_pid"]}
    assert set(stack) == {"server", "worker", "api", "steps worker"}
    left = {name: pid for name, pid in stack.items() if psutil.pid_exists(pid)}
    assert not left, f"the bench left processes behind: {left}"
