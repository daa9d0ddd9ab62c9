"""`make bench`: ordermill against the Temporal ceiling on the same server, in one run.

1. Starts an isolated stack (bench/stack.py) unless --api-url/--temporal-address name one.
2. Ceiling: --orders bare workflows of an order's shape (bench/shape.py) at --concurrency,
   through the Temporal client, on a worker of their own in this process.
3. ordermill: as many real orders through POST /orders, each delivered by a signed carrier
   webhook as soon as it is `shipped`, at the same concurrency. Meanwhile a raw start_workflow
   a second (StartProbe) shows what a start costs under that load, without the API. Then, on
   our own stack, as many workflows of a bench order's exact steps as no-ops (bench/steps.py)
   on a worker process of their own: the SDK's cost for those steps, the floor under
   ordermill's worker.
4. Open orders: --open-orders orders placed (at most --concurrency being processed at once)
   and left waiting for delivery; the worker's and the server's RSS, then a sample of them
   delivered one at a time, webhook -> GET shows `delivered`.
5. One table on stdout; results.json and latency.png in --out (bench/results/ by default).

A few orders of each kind warm the stack up first and are not counted. Exit status: 0 when
every order got where it should, 1 when some did not (the table says how many), 2 when the
stack could not be started or reached.
"""

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from temporalio.worker import Worker
from tqdm import tqdm

from bench.drivers import (
    CeilingDriver,
    Lanes,
    OrdermillDriver,
    StartProbe,
    StepsDriver,
    Timing,
    api_headers,
    place_waiting_orders,
    run_lanes,
    sample_deliveries,
)
from bench.ledger import double_effects
from bench.meters import Meter, cpu_ms_per_order, step_cpu_per_order, worker_step_cpu
from bench.report import judge_targets, latency_ms, plot, ratio, table, write_json
from bench.shape import BareOrder, step
from bench.stack import Endpoints, OwnStack, StackError, connect, running_stack_endpoints

ROOT = Path(__file__).resolve().parent.parent
FULL_OPEN_ORDERS = 10_000
SETTLE = 3.0  # seconds between the last open order shipping and measuring memory


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make bench",
        description="ordermill's throughput and latency against the Temporal ceiling. "
        'Pass options with BENCH_ARGS="--orders 50 ...".',
    )
    parser.add_argument("--orders", type=int, default=200, help="orders per run (default 200)")
    parser.add_argument("--concurrency", type=int, default=20, help="orders in flight (20)")
    parser.add_argument(
        "--open-orders",
        type=int,
        default=None,
        help=f"orders left waiting for delivery (300; {FULL_OPEN_ORDERS:,} with --full)",
    )
    parser.add_argument(
        "--full", action="store_true", help=f"{FULL_OPEN_ORDERS:,} open orders, as the target says"
    )
    parser.add_argument(
        "--in-memory", action="store_true", help="the dev server keeps history in memory"
    )
    parser.add_argument("--api-url", help="use a running ordermill API instead of our own stack")
    parser.add_argument("--temporal-address", help="its Temporal server (needed with --api-url)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="results directory"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="uncounted orders of each kind first (4)"
    )
    parser.add_argument(
        "--sample", type=int, default=100, help="open orders delivered for latency (100)"
    )
    parser.add_argument(
        "--poll", type=float, default=0.5, help="seconds between polls while processing (0.5)"
    )
    parser.add_argument(
        "--delivery-poll",
        type=float,
        default=0.1,
        help="seconds between polls once a delivery is sent, under load (0.1)",
    )
    parser.add_argument(
        "--sample-poll",
        type=float,
        default=0.02,
        help="the same for the open-order deliveries, sent one at a time (0.02)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes on the one task queue (1)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the Temporal server on CPU 0, ordermill and the bench on CPU 1 (taskset)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for our stack's worker and API, e.g. --set ACTIVITY_THREADS=8",
    )
    args = parser.parse_args(argv)
    if (args.api_url is None) != (args.temporal_address is None):
        parser.error("--api-url and --temporal-address go together")
    if args.open_orders is None:
        args.open_orders = FULL_OPEN_ORDERS if args.full else 300
    if args.warmup is None:
        args.warmup = min(4, args.orders)
    if (args.workers != 1 or args.pin) and args.api_url:
        parser.error("--workers and --pin start our own stack: not with --api-url")
    if args.pin and (not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2):
        parser.error("--pin needs taskset and two CPUs")
    for name in ("orders", "concurrency", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if any("=" not in item for item in args.set):
        parser.error("--set takes KEY=VALUE")
    return args


def say(line: str) -> None:
    print(f"bench | {line}", file=sys.stderr, flush=True)


def bar(total: int, desc: str) -> "tqdm[Any]":
    return tqdm(
        total=total,
        desc=f"{desc:<22}",
        unit="order",
        disable=not sys.stderr.isatty(),
        dynamic_ncols=True,
    )


async def phase(
    desc: str, n: int, concurrency: int, one: Callable[[int], Awaitable[Timing]]
) -> Lanes:
    say(f"{desc}: {n} order(s), {concurrency} at a time")
    with bar(n, desc) as progress:
        lanes = await run_lanes(n, concurrency, one, progress)
    say(f"{desc}: {len(lanes.timings)} done, {lanes.failed} failed in {lanes.wall:.1f}s")
    for error in lanes.errors[:3]:
        say(f"  {error}")
    return lanes


@contextlib.asynccontextmanager
async def stack_for(args: argparse.Namespace) -> AsyncIterator[Endpoints]:
    if args.api_url:
        yield running_stack_endpoints(args.api_url, args.temporal_address)
        return
    extra = dict(item.split("=", 1) for item in args.set)
    kind = "in memory" if args.in_memory else "on a fresh SQLite file"
    say(f"starting an isolated stack: dev server {kind}, worker, API (logs in {args.out}/logs)")
    if args.pin:
        os.sched_setaffinity(0, {1})  # the bench's own load beside ordermill, not the server
    stack = OwnStack(
        args.out / "logs", in_memory=args.in_memory, env=extra, workers=args.workers, pin=args.pin
    )
    async with stack as endpoints:
        say(f"stack up: API {endpoints.api_url}, Temporal {endpoints.temporal_address}")
        yield endpoints
    say("stack stopped")


async def step_cpu(endpoints: Endpoints) -> dict[str, tuple[float, float]] | None:
    """The worker's CPU by step so far; None without its metrics (N workers, or not ours)."""
    if endpoints.worker_metrics_url is None:
        return None
    try:
        return await asyncio.to_thread(worker_step_cpu, endpoints.worker_metrics_url)
    except (httpx.HTTPError, ValueError) as err:
        say(f"the worker's metrics could not be read ({err}): no CPU by step")
        return None


async def measure(args: argparse.Namespace, endpoints: Endpoints) -> dict[str, Any]:
    client = await connect(endpoints)
    meter = Meter(endpoints.pids)
    n, c = args.orders, args.concurrency

    # ---- the ceiling, on a worker of its own in this process
    task_queue = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[BareOrder], activities=[step]):
        ceiling = CeilingDriver(client, task_queue, poll=args.poll, fast_poll=args.delivery_poll)
        if args.warmup:
            await phase("ceiling warm-up", args.warmup, c, ceiling.order)
        ceiling.polls = 0
        cpu_before = meter.cpu_seconds()
        bare = await phase("ceiling", n, c, ceiling.order)
        ceiling_cpu = cpu_ms_per_order(cpu_before, meter.cpu_seconds(), len(bare.timings))

    limits = httpx.Limits(max_connections=2 * c + 8, max_keepalive_connections=2 * c + 8)
    async with httpx.AsyncClient(
        base_url=endpoints.api_url, headers=api_headers(), timeout=30.0, limits=limits
    ) as http:

        def driver() -> OrdermillDriver:
            return OrdermillDriver(
                http, endpoints.webhook_secret, poll=args.poll, fast_poll=args.delivery_poll
            )

        # ---- ordermill, the same orders through the API
        if args.warmup:
            await phase("ordermill warm-up", args.warmup, c, driver().order)
        orders = driver()
        probe = StartProbe(client)
        probing = asyncio.create_task(probe.run())
        steps_before = await step_cpu(endpoints)
        cpu_before = meter.cpu_seconds()
        try:
            real = await phase("ordermill", n, c, orders.order)
        finally:
            probing.cancel()
        ordermill_cpu = cpu_ms_per_order(cpu_before, meter.cpu_seconds(), len(real.timings))
        by_step = step_cpu_per_order(steps_before, await step_cpu(endpoints), len(real.timings))

        # ---- a bench order's steps, bare, on a worker process of their own (our own stack only),
        # after ordermill's orders, so that those run on the server as they always have
        steps: Lanes | None = None
        steps_cpu: dict[str, float] = {}
        if endpoints.steps_pid is not None and endpoints.steps_task_queue is not None:
            server = {"server": endpoints.pids["server"]} if "server" in endpoints.pids else {}
            steps_meter = Meter({"steps": endpoints.steps_pid, **server})
            floor = StepsDriver(client, endpoints.steps_task_queue, poll=args.poll)
            if args.warmup:
                await phase("order's steps warm-up", args.warmup, c, floor.order)
            cpu_before = steps_meter.cpu_seconds()
            steps = await phase("order's steps, bare", n, c, floor.order)
            steps_cpu = cpu_ms_per_order(cpu_before, steps_meter.cpu_seconds(), len(steps.timings))

        # ---- open orders, left waiting for their delivery
        waiting_driver = driver()
        meter.peak_rss.clear()
        rss_before = meter.rss_mb()
        peaks = asyncio.create_task(meter.watch_peaks())
        try:
            say(f"open orders: placing {args.open_orders}, at most {c} being processed at once")
            with bar(args.open_orders, "open orders") as progress:
                waiting = await place_waiting_orders(
                    waiting_driver, client, args.open_orders, c, progress
                )
            say(
                f"open orders: {len(waiting.timings)} waiting, {waiting.failed} failed "
                f"in {waiting.wall:.1f}s"
            )
            await asyncio.sleep(SETTLE)
            rss = meter.rss_mb()
        finally:
            peaks.cancel()
        k = min(args.sample, len(waiting.timings))
        say(f"delivering {k} of the {len(waiting.timings)} open orders, one at a time")
        with bar(k, "open-order deliveries") as progress:
            sampled = await sample_deliveries(
                waiting_driver, waiting.timings, k, args.sample_poll, progress
            )

    starts = [t.start for t in bare.timings]
    posts = [t.start for t in real.timings]
    samples = {
        "raw_start": starts,
        "post": posts,
        "probe_start": probe.latencies,
        "ceiling_delivered": [t.deliver for t in bare.timings if t.deliver is not None],
        "delivered": [t.deliver for t in real.timings if t.deliver is not None],
        "open_delivered": [t.deliver for t in sampled.timings if t.deliver is not None],
    }
    lat = {key: latency_ms(values) for key, values in samples.items()}
    pids = endpoints.pids
    doubled = double_effects(endpoints.database_url) if endpoints.database_url else None
    return {
        "config": {
            "orders": n,
            "concurrency": c,
            "open_orders": args.open_orders,
            "server": endpoints.server,
            "warmup": args.warmup,
            "poll_s": args.poll,
            "delivery_poll_s": args.delivery_poll,
            "sample_poll_s": args.sample_poll,
            "stack_settings": args.set,
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            "pids": pids,
            "steps_pid": endpoints.steps_pid,
            "workers": args.workers,
            "pinned": args.pin,
        },
        "double_effects": doubled,
        "ceiling": {
            "done": len(bare.timings),
            "failed": bare.failed,
            "errors": bare.errors,
            "wall_s": round(bare.wall, 2),
            "orders_per_s": round(bare.per_second, 2),
            "start_ms": lat["raw_start"],
            "delivered_ms": lat["ceiling_delivered"],
            "polls_per_order": _per(ceiling.polls, n),
            "cpu_ms_per_order": ceiling_cpu,
        },
        "steps": None
        if steps is None
        else {
            "done": len(steps.timings),
            "failed": steps.failed,
            "errors": steps.errors,
            "wall_s": round(steps.wall, 2),
            "orders_per_s": round(steps.per_second, 2),
            "worker_cpu_ms_per_order": steps_cpu.get("steps"),
            "server_cpu_ms_per_order": steps_cpu.get("server"),
        },
        "ordermill": {
            "done": len(real.timings),
            "failed": real.failed,
            "errors": real.errors,
            "wall_s": round(real.wall, 2),
            "orders_per_s": round(real.per_second, 2),
            "post_orders_ms": lat["post"],
            "raw_start_same_time_ms": lat["probe_start"],
            "delivered_ms": lat["delivered"],
            "cpu_ms_per_order": ordermill_cpu,
            "worker_cpu_by_step": by_step,
            "reads_not_yet_answered": orders.unanswered_reads,
            "polls_per_order": _per(orders.polls, n),
        },
        "ratios": {
            "orders_per_s": ratio(real.per_second, bare.per_second),
            "start_p50": ratio(lat["post"]["p50"], lat["raw_start"]["p50"]),
            "start_p99": ratio(lat["post"]["p99"], lat["raw_start"]["p99"]),
            "start_p50_same_time": ratio(lat["post"]["p50"], lat["probe_start"]["p50"]),
            "delivered_p50": ratio(lat["delivered"]["p50"], lat["ceiling_delivered"]["p50"]),
            "server_cpu": ratio(ordermill_cpu.get("server"), ceiling_cpu.get("server")),
            "worker_cpu_over_steps": ratio(ordermill_cpu.get("worker"), steps_cpu.get("steps")),
        },
        "open_orders": {
            "count": len(waiting.timings),  # waiting when memory was measured
            "delivered_sample": len(sampled.timings),
            "failed": waiting.failed + sampled.failed,
            "errors": waiting.errors + sampled.errors,
            "placed_per_s": round(waiting.per_second, 2),
            "worker_rss_before_mb": _mb(rss_before, "worker", pids),
            "worker_rss_mb": _mb(rss, "worker", pids),
            "worker_rss_peak_mb": _mb(meter.peak_rss, "worker", pids),
            "server_rss_before_mb": _mb(rss_before, "server", pids),
            "server_rss_mb": _mb(rss, "server", pids),
            "server_rss_peak_mb": _mb(meter.peak_rss, "server", pids),
            "api_rss_mb": _mb(rss, "api", pids),
            "delivery_ms": lat["open_delivered"],
        },
        "samples_ms": {
            key: [round(v * 1000, 2) for v in values] for key, values in samples.items()
        },
    }


def _per(count: int, orders: int) -> float | None:
    return round(count / orders, 1) if orders else None


def _mb(sizes: dict[str, float], name: str, pids: dict[str, int]) -> float | None:
    return round(sizes[name], 1) if name in pids and name in sizes else None


async def amain(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    try:
        async with stack_for(args) as endpoints:
            results = await measure(args, endpoints)
    except StackError as err:
        say(f"the stack could not be used: {err}")
        return 2
    results["machine"] = {
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    results["targets"] = judge_targets(results)
    write_json(results, args.out / "results.json")
    plot(
        {k: [v / 1000 for v in values] for k, values in results["samples_ms"].items()},
        results,
        args.out / "latency.png",
    )
    print(table(results), flush=True)
    say(f"wrote {args.out / 'results.json'} and {args.out / 'latency.png'}")
    failed = sum(
        results[part]["failed"]
        for part in ("ceiling", "steps", "ordermill", "open_orders")
        if results[part] is not None
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        code = asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted; the stack was stopped")
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit without the interpreter's shutdown: the Temporal SDK can abort there after a
    # client was used (sdk-python #300, "Fatal Python error: PyGILState_Release").
    os._exit(code)
