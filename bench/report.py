"""The bench's results: one table on stdout, the same figures as JSON, latencies as a PNG."""

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The targets ordermill holds itself to: (figure in the JSON, how it compares, the limit, in words).
# The open-order ones hold at OPEN_ORDERS_TARGET waiting orders; fewer only indicate.
OPEN_ORDERS_TARGET = 10_000
TARGETS: list[tuple[str, str, float, str]] = [
    ("ratios.orders_per_s", ">=", 0.8, "ordermill orders/s >= 0.8 x ceiling"),
    ("ratios.start_p50", "<=", 1.5, "POST /orders p50 <= 1.5 x start_workflow p50"),
    ("ordermill.cpu_ms_per_order.worker", "<=", 60.0, "worker CPU <= 60 ms per order"),
    ("ratios.server_cpu", "<=", 1.1, "server CPU per order <= 1.1 x ceiling's"),
    ("open_orders.worker_rss_mb", "<=", 300.0, "worker RSS <= 300 MB (at 10,000 open)"),
    ("open_orders.delivery_ms.p99", "<=", 1000.0, "delivered within 1 s p99 (at 10,000 open)"),
]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linearly interpolated; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(seconds: Sequence[float]) -> dict[str, float | int | None]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50": _round(percentile(ms, 50)),
        "p99": _round(percentile(ms, 99)),
        "max": _round(max(ms)) if ms else None,
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def lookup(results: dict[str, Any], dotted: str) -> Any:
    value: Any = results
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def judge_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    judged = []
    open_count = results["open_orders"]["count"]
    for figure, op, limit, words in TARGETS:
        value = lookup(results, figure)
        met = None if value is None else (value >= limit if op == ">=" else value <= limit)
        at_scale = not figure.startswith("open_orders.") or open_count >= OPEN_ORDERS_TARGET
        judged.append(
            {"target": words, "figure": figure, "value": value, "met": met, "at_scale": at_scale}
        )
    return judged


# ---- the table ---------------------------------------------------------------------------------


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"
    else:
        text = str(value)
    return text + unit


def _pair(lat: dict[str, Any] | None) -> str:
    if not lat or lat.get("p50") is None:
        return "-"
    return f"{_fmt(lat['p50'])} / {_fmt(lat['p99'])}"


def table(results: dict[str, Any]) -> str:
    c, o, r = results["ceiling"], results["ordermill"], results["ratios"]
    op = results["open_orders"]
    cfg = results["config"]
    steps = results.get("steps")
    rows: list[tuple[str, str, str, str]] = [
        ("", "ceiling", "ordermill", "ratio"),
        ("orders/s", _fmt(c["orders_per_s"]), _fmt(o["orders_per_s"]), _fmt(r["orders_per_s"])),
    ]
    if steps is not None:
        rows.append(
            (
                "  vs the order's own steps, bare",
                _fmt(steps["orders_per_s"]),
                _fmt(o["orders_per_s"]),
                _fmt(ratio(o["orders_per_s"], steps["orders_per_s"])),
            )
        )
    rows += [
        (
            "start p50 / p99 ms (raw start vs POST)",
            _pair(c["start_ms"]),
            _pair(o["post_orders_ms"]),
            _fmt(r["start_p50"]),
        ),
        (
            "  raw start during the ordermill run",
            "",
            _pair(o["raw_start_same_time_ms"]),
            _fmt(r["start_p50_same_time"]),
        ),
        (
            "delivered p50 / p99 ms (signal vs webhook)",
            _pair(c["delivered_ms"]),
            _pair(o["delivered_ms"]),
            _fmt(r["delivered_p50"]),
        ),
        (
            "orders done / failed",
            f"{c['done']} / {c['failed']}",
            f"{o['done']} / {o['failed']}",
            "",
        ),
        (
            "polls per order (query vs GET)",
            _fmt(c["polls_per_order"]),
            _fmt(o["polls_per_order"]),
            _fmt(ratio(o["polls_per_order"], c["polls_per_order"])),
        ),
    ]
    # The ceiling has no API, and its worker runs inside the bench process (counted under
    # "bench"): the worker's yardstick is the order's steps as no-ops, in a process of their own.
    for proc, label in (
        ("server", "server"),
        ("worker", "worker"),
        ("api", "API"),
        ("bench", "bench (+ ceiling worker)"),
    ):
        cc, oc = c["cpu_ms_per_order"].get(proc), o["cpu_ms_per_order"].get(proc)
        if proc in ("worker", "api"):
            cc = None
        if cc is None and oc is None:
            continue
        # The bench does different work in the two phases: its two figures are no ratio.
        apart = proc == "bench"
        rows.append(
            (f"  CPU ms/order: {label}", _fmt(cc), _fmt(oc), "" if apart else _fmt(ratio(oc, cc)))
        )
    if steps is not None:
        for proc in ("server", "worker"):
            bare, real = steps.get(f"{proc}_cpu_ms_per_order"), o["cpu_ms_per_order"].get(proc)
            rows.append(
                (
                    f"  CPU ms/order: {proc} vs the steps bare",
                    _fmt(bare),
                    _fmt(real),
                    _fmt(ratio(real, bare)),
                )
            )
    by_step = o.get("worker_cpu_by_step")
    worker = o["cpu_ms_per_order"].get("worker")
    if by_step and worker is not None:
        # Each step's own thread CPU (the worker's metrics); the rest is mostly the SDK's.
        rows.append(("  worker CPU ms/order by step (runs per order)", "", "", ""))
        for step, figures in by_step.items():
            rows.append((f"    {step} ({figures['runs']:g})", "", _fmt(figures["ms"]), ""))
        steps_ms = sum(figures["ms"] for figures in by_step.values())
        rows.append(
            ("    the rest: SDK, workflow code, async steps", "", _fmt(worker - steps_ms), "")
        )
    rows += [
        ("", "", "", ""),
        (f"open orders waiting: {op['count']}", "", "", ""),
        (
            "  worker RSS MB: before, waiting (peak)",
            "",
            f"{_fmt(op['worker_rss_before_mb'])}, {_fmt(op['worker_rss_mb'])} "
            f"({_fmt(op['worker_rss_peak_mb'])})",
            "",
        ),
        (
            "  server RSS MB: before, waiting (peak)",
            "",
            f"{_fmt(op['server_rss_before_mb'])}, {_fmt(op['server_rss_mb'])} "
            f"({_fmt(op['server_rss_peak_mb'])})",
            "",
        ),
        ("  placed per second (no polling)", "", _fmt(op["placed_per_s"]), ""),
        ("  API RSS MB", "", _fmt(op["api_rss_mb"]), ""),
        ("  webhook -> delivered p50 / p99 ms", "", _pair(op["delivery_ms"]), ""),
    ]
    doubled = results.get("double_effects")
    if doubled is not None:
        rows += [
            ("", "", "", ""),
            ("orders that took effect twice (ledgers)", "", str(sum(doubled.values())), ""),
        ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"ordermill bench: {cfg['orders']} orders at concurrency {cfg['concurrency']}, "
        f"server {cfg['server']}, {op['count']} open orders, "
        f"{cfg.get('workers', 1)} worker process(es)"
        + (", server pinned to CPU 0 and ordermill to CPU 1" if cfg.get("pinned") else ""),
        "",
    ]
    for row in rows:
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
        )
    lines.append("")
    lines.append("targets:")
    for target in results["targets"]:
        state = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        scale = "" if target["at_scale"] else f" (only {op['count']:,} open: indicative)"
        lines.append(f"  {state:<12} {target['target']}: {_fmt(target['value'])}{scale}")
    machine = results["machine"]
    lines += [
        "",
        f"load average {machine['load_before'][0]:.2f} before, {machine['load_after'][0]:.2f} "
        f"after, on {machine['cpus']} CPUs: other work on this machine moves absolute numbers;",
        "ratios within one run hold better. Latencies have the polling interval as resolution.",
    ]
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")


# ---- the picture -------------------------------------------------------------------------------


def plot(samples: dict[str, list[float]], results: dict[str, Any], path: Path) -> None:
    """Cumulative distributions of each latency, log time axis, p50 and p99 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    open_count = results["open_orders"]["count"]
    panels = [
        (
            "Starting an order",
            [
                ("raw start_workflow (ceiling run)", "raw_start", "#1f77b4"),
                ("raw start_workflow (during ordermill run)", "probe_start", "#7f7f7f"),
                ("POST /orders", "post", "#d62728"),
            ],
            None,
        ),
        (
            "Delivery shown, under load",
            [
                ("signal -> query (ceiling)", "ceiling_delivered", "#1f77b4"),
                ("webhook -> GET (ordermill)", "delivered", "#d62728"),
            ],
            None,
        ),
        (
            f"Delivery shown, {open_count} open orders",
            [("webhook -> GET (ordermill)", "open_delivered", "#d62728")],
            1000.0,  # the target line: delivered within 1 s p99
        ),
    ]
    # One time axis for all three, so a glance across the panels compares them.
    fig, axes = plt.subplots(1, 3, figsize=(15, 6.0), sharex=True, sharey=True)
    for ax, (title, series, target_ms) in zip(axes, panels, strict=True):
        for label, key, color in series:
            ms = sorted(s * 1000 for s in samples.get(key, []))
            if not ms:
                continue
            fraction = [(i + 1) / len(ms) for i in range(len(ms))]
            p50, p99 = percentile(ms, 50), percentile(ms, 99)
            ax.step(
                ms,
                fraction,
                where="post",
                color=color,
                label=f"{label}\np50 {p50:.0f} ms, p99 {p99:.0f} ms, n={len(ms)}",
            )
            for p, style in ((p50, ":"), (p99, "--")):
                ax.axvline(p, color=color, linestyle=style, linewidth=0.8, alpha=0.7)
        if target_ms is not None:
            ax.axvline(
                target_ms, color="0.4", linewidth=1.5, alpha=0.6, label="target: p99 <= 1000 ms"
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title)
        ax.set_xlabel("milliseconds (log scale; dotted p50, dashed p99)")
        ax.grid(True, which="major", alpha=0.3)
        # Below the panel: the curves fill the axes, a legend inside hides some of them.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, frameon=False)
    axes[0].set_ylabel("fraction of requests")
    cfg = results["config"]
    fig.suptitle(
        f"ordermill bench: {cfg['orders']} orders at concurrency {cfg['concurrency']}, "
        f"server {cfg['server']}; orders/s {results['ordermill']['orders_per_s']:.1f} vs "
        f"ceiling {results['ceiling']['orders_per_s']:.1f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
