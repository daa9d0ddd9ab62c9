"""Replay the committed order histories against today's OrderWorkflow.

A failure here means the workflow code changed in a way that orders recorded on an earlier
shape would not survive (a reordered, added or removed activity, timer or status change).
Before the first release, re-record; after it, make the change compatible with
`workflow.patched(...)`. tests/record_histories.py says which applies when.
"""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.record_histories import PATHS
from workflows.order import OrderWorkflow

HISTORIES = {
    path.stem: path.read_text()
    for path in sorted((Path(__file__).parent / "histories").glob("*.json"))
}


def test_every_path_has_a_recorded_history() -> None:
    assert set(HISTORIES) >= set(PATHS)


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_recorded_history_replays_on_the_current_workflow(name: str) -> None:
    history = WorkflowHistory.from_json(f"order-{name}", HISTORIES[name])
    replayer = Replayer(workflows=[OrderWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
