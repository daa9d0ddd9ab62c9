"""`make run`'s parts, one concern to a module; scripts/run.py puts them together.

config      the settings, read and checked once, with make run's defaults
ports       the ports to listen on, checked free before anything starts
startup     what runs, in order: Temporal, the Schedule, migrations, worker and API
supervisor  keeps the children running; stops them in order on Ctrl-C or a failure
process     one child process in a group of its own, stopped with a grace period
readiness   waiting for Temporal and the API to answer
banner      where everything is, printed once everything answers
urls        where ordermill answers, as a browser here reaches it
output      the terminal: each line labelled with who said it
"""
