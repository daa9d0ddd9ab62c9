"""Workflow code stays deterministic: what stands in for Temporal's sandbox, which ordermill's
workflows run without (see workflows/__init__.py).

Every module under workflows/ is read as source, and so are the models it computes with. A
workflow may only import what cannot reach a clock, randomness, the environment or I/O; it reads
the time with `workflow.now()`; it keeps no state at module or class level, which every order
run by the worker would share. The recorded histories (test_replay.py) catch the rest: a change
of commands that orders already running would not survive.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Top-level packages a workflow module may import from.
ALLOWED_PACKAGES = {
    "__future__",
    "activities",  # only activity classes (for their methods) and errors: see _import_problems
    "asyncio",  # in a workflow, its sleeps and waits are Temporal's own timers and conditions
    "collections",
    "contextlib",
    "dataclasses",
    "datetime",  # for its types; reading the clock is refused below
    "enum",
    "functools",
    "itertools",
    "math",
    "models",
    "pydantic",
    "re",
    "temporalio",
    "typing",
    "workflows",
}
# Parts of the SDK that are for clients and workers, not for workflow code.
REFUSED_TEMPORAL = {"temporalio.activity", "temporalio.client", "temporalio.worker"}
# Builtins whose result differs between processes or that reach outside the workflow.
REFUSED_BUILTINS = {"open", "print", "input", "hash", "id", "exec", "eval", "__import__"}
CLOCK_READS = {"now", "utcnow", "today", "fromtimestamp", "time", "monotonic", "perf_counter"}
MUTABLE_DISPLAYS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
MUTABLE_FACTORIES = {"list", "dict", "set", "defaultdict", "deque", "Counter", "OrderedDict"}


def problems(source: str) -> list[str]:
    """Every reason `source`, as a workflow module, could decide differently on replay."""
    tree = ast.parse(source)
    found = list(_import_problems(tree))
    found += _call_problems(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found.append(f"line {node.lineno}: `global` state is shared by every order")
    for body in [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
        found += _shared_state_problems(body)
    return found


def _import_problems(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        modules: list[tuple[str, str | None]]
        if isinstance(node, ast.Import):
            modules = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in modules:
            package = module.split(".")[0]
            if package not in ALLOWED_PACKAGES:
                yield f"line {node.lineno}: imports {module}"
            elif any(module == m or module.startswith(m + ".") for m in REFUSED_TEMPORAL):
                yield f"line {node.lineno}: imports {module}, which is not for workflow code"
            elif package == "activities" and not (
                module == "activities.errors" or (name or "").endswith("Activities")
            ):
                yield f"line {node.lineno}: imports {name or module} from {module}"


def _call_problems(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in REFUSED_BUILTINS:
            yield f"line {node.lineno}: calls {func.id}()"
        elif isinstance(func, ast.Attribute) and func.attr in CLOCK_READS:
            owner = func.value
            if not (isinstance(owner, ast.Name) and owner.id == "workflow"):
                yield f"line {node.lineno}: reads the clock with .{func.attr}(), not workflow.now()"


def _mutable(value: ast.expr) -> bool:
    if isinstance(value, ast.BinOp):  # [...] + [...]
        return _mutable(value.left) or _mutable(value.right)
    factory = (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in MUTABLE_FACTORIES
    )
    return factory or isinstance(value, MUTABLE_DISPLAYS)


def _shared_state_problems(body: list[ast.stmt]) -> Iterator[str]:
    for statement in body:
        assigned = isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value
        if assigned and _mutable(assigned):
            yield (
                f"line {statement.lineno}: a mutable value at module or class level is "
                "shared by every order (use a tuple, a frozenset or an instance attribute)"
            )


def _workflow_modules() -> list[Path]:
    return sorted((ROOT / "workflows").glob("*.py"))


@pytest.mark.parametrize("path", _workflow_modules(), ids=lambda p: p.name)
def test_every_workflow_module_is_deterministic(path: Path) -> None:
    assert problems(path.read_text()) == []


@pytest.mark.parametrize(
    "path",
    # The models workflows compute with; tables and projection are the database's, never
    # imported by a workflow.
    [p for p in sorted((ROOT / "models").glob("*.py")) if p.stem not in {"tables", "projection"}],
    ids=lambda p: p.name,
)
def test_the_models_workflows_compute_with_read_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert list(_call_problems(tree)) == []


def test_no_workflow_imports_the_database_tables() -> None:
    for path in _workflow_modules():
        assert "models.tables" not in path.read_text(), path.name


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("import random", "imports random"),
        ("from time import monotonic", "imports time"),
        ("import uuid", "imports uuid"),
        ("from settings import Settings", "imports settings"),
        ("from sqlmodel import Session", "imports sqlmodel"),
        ("from temporalio.client import Client", "not for workflow code"),
        ("from activities.read_model import scrubbed", "imports scrubbed from"),
        ("from datetime import datetime\nx = datetime.now()", "reads the clock"),
        ("import datetime\ndef f():\n    return datetime.date.today()", "reads the clock"),
        ("def f(s):\n    return hash(s)", "calls hash()"),
        ("def f():\n    print('x')", "calls print()"),
        ("SEEN = set()", "mutable value"),
        ("SEEN: list[str] = []", "mutable value"),
        ("BUCKETS = [1.0] + [2.0 * n for n in range(3)]", "mutable value"),
        ("class W:\n    pending = {}", "mutable value"),
        ("n = 0\ndef f():\n    global n\n    n += 1", "`global` state"),
    ],
)
def test_the_guard_refuses_what_would_break_replay(source: str, reason: str) -> None:
    found = problems(source)
    assert any(reason in problem for problem in found), found


def test_the_guard_accepts_what_workflows_do() -> None:
    source = (
        "import asyncio\nfrom datetime import timedelta\nfrom temporalio import workflow\n"
        "from activities.inventory import InventoryActivities\n"
        "from activities.errors import OUT_OF_STOCK\n"
        "LIMITS = (1, 2)\nCODES = frozenset({'a'})\n"
        "class W:\n    def __init__(self):\n        self.seen = set()\n"
        "    async def run(self):\n        now = workflow.now()\n"
        "        await asyncio.sleep(timedelta(days=1).total_seconds())\n        return now\n"
    )
    assert problems(source) == []
