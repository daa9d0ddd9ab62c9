"""`make run`'s parts, one concern to a module; scripts/run.py puts them together.

output      the terminal: each line labelled with who said it
urls        where ordermill answers, as a browser here reaches it
banner      where everything is, printed once everything answers
process     one child process in a group of its own, stopped with a grace period
"""
