"""The demo's status board: one line per order, saying where it is."""

import shutil
import sys
from typing import Any


class Board:
    """One line per order: redrawn in place on a terminal, printed on change otherwise."""

    def __init__(self, labels: list[str], *, live: bool) -> None:
        self.lines = dict.fromkeys(labels, "waiting to be placed")
        self.live = live
        self.width = max(map(len, labels)) + 2
        self._drawn = 0

    def show(self, label: str, text: str) -> None:
        if self.lines[label] == text:
            return
        self.lines[label] = text
        if self.live:
            self.redraw()
        else:
            print(f"{label:<{self.width}}{text}", flush=True)

    def redraw(self) -> None:
        # Rows are cut to the terminal's width: a wrapped row would throw the cursor moves off.
        columns = shutil.get_terminal_size().columns - 1
        up = f"\033[{self._drawn}F" if self._drawn else ""
        rows = "".join(
            "\033[2K" + f"{label:<{self.width}}{text}"[:columns] + "\n"
            for label, text in self.lines.items()
        )
        sys.stdout.write(up + rows)
        sys.stdout.flush()
        self._drawn = len(self.lines)


def describe(view: dict[str, Any]) -> str:
    """`shipped  carrier: in_transit  1Z...`: the status and what explains it."""
    parts = [view["status"]]
    held = [h["hold_id"] for h in view.get("holds") or [] if h["resolution"] is None]
    if held:
        parts.append("held: " + ", ".join(held))
    if view.get("reason"):
        parts.append(f"{view['reason']['code']}: {view['reason']['detail']}")
    for shipment in view.get("shipments") or []:
        if shipment["tracking_number"]:
            state = shipment.get("status") or "booked"
            parts.append(f"{shipment['shipment_id']}: {state} {shipment['tracking_number']}")
    for ret in view.get("returns") or []:
        parts.append(f"return {ret['return_id']}: {ret['status']}")
    return "  ".join(parts)
