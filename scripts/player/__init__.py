"""`make demo`'s parts, one concern to a module; scripts/demo.py puts them together.

scenarios   the customers, the carrier's scripts, and one Scenario per order
orders      each scenario's order, played to the status it should end in
parties     the operator and the carrier, and how a refusal reads
board       the status board: one line per order, saying where it is
"""
