"""`make run`'s parts, one concern to a module; scripts/run.py puts them together.

output      the terminal: each line labelled with who said it
process     one child process in a group of its own, stopped with a grace period
"""
