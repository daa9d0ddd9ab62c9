"""The supervisor's terminal: every line labelled with who said it, `run` or a child's name."""

import contextlib
import os
import sys

_COLORS = {"run": "1", "temporal": "35", "db": "33", "worker": "36", "api": "32"}
_use_color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def say(name: str, line: str) -> None:
    label = f"{name:<8}|"
    if _use_color:
        label = f"\033[{_COLORS.get(name, '0')}m{label}\033[0m"
    # If whoever read our output went away, keep supervising all the same.
    with contextlib.suppress(BrokenPipeError):
        print(f"{label} {line}", flush=True)


def log(line: str) -> None:
    say("run", line)
