"""`make run`'s parts, one concern to a module; scripts/run.py puts them together.

config      the settings, read and checked once, with make run's defaults
ports       the ports to listen on, checked free before anything starts
output      the terminal: each line labelled with who said it
urls        where ordermill answers, as a browser here reaches it
banner      where everything is, printed once everything answers
process     one child process in a group of its own, stopped with a grace period
"""
