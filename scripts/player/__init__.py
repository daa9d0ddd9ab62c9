"""`make demo`'s parts, one concern to a module; scripts/demo.py puts them together.

scenarios   the customers, the carrier's scripts, and one Scenario per order
board       the status board: one line per order, saying where it is
"""
