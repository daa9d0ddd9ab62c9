"""Workflows: one durable workflow per order.

They run without Temporal's sandbox (`sandboxed=False`). The sandbox restricted only the code of
the module that defines a workflow, not the modules it imports (where nearly all of an order's
logic lives), yet re-imported that module for every order and re-entered it for every payload:
a third of the worker's busy time under `make bench`. tests/test_workflow_determinism.py reads
every module here instead, and the recorded histories (tests/test_replay.py) replay on each change.
"""
