"""The bench's worker CPU by step, read from a real worker runtime's Prometheus exposition: an
activity's runs and seconds under its type, every email's delivery as one step, and per order
over a phase."""

import urllib.request

import pytest

from activities import cpu
from bench.meters import step_cpu_of, step_cpu_per_order
from tests.conftest import free_port
from worker import metrics_runtime


def test_the_worker_cpu_by_step_is_read_from_its_metrics_and_spread_per_order() -> None:
    address = f"127.0.0.1:{free_port()}"
    runtime = metrics_runtime(address)
    assert runtime is not None
    records = runtime.metric_meter.with_additional_attributes({"activity_type": "record_order"})
    histogram = records.create_histogram_float(cpu.ACTIVITY_CPU, "test")

    def exposition() -> str:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            return str(response.read().decode())

    histogram.record(0.0015)
    before = step_cpu_of(exposition())
    histogram.record(0.002)
    histogram.record(0.003)
    cpu.email_delivered(runtime.metric_meter, 0.0004)
    after = step_cpu_of(exposition())

    assert before == {"record_order": (1, pytest.approx(0.0015))}
    assert after == {
        "record_order": (3, pytest.approx(0.0065)),
        "email delivery": (1, pytest.approx(0.0004)),
    }
    assert step_cpu_per_order(before, after, 2) == {
        "record_order": {"runs": 1.0, "ms": 2.5},
        "email delivery": {"runs": 0.5, "ms": 0.2},
    }
    assert step_cpu_per_order(None, after, 2) is None
