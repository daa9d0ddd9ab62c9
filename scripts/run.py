"""`make run`: the whole of ordermill on one machine, supervised.

Starts the Temporal dev server (history kept in $DATA_DIR/temporal.db, so orders survive a
restart) unless TEMPORAL_ADDRESS names a server to use instead, brings the database to the
latest migration and seeds it (`python database.py`, once per start: the worker and the API
refuse a database that is not at head), then runs the worker and the API and restarts either
one if it crashes. The dev server too, once it has answered: restarted on the same history file,
orders carry on where they were, and the worker and the API reconnect by themselves. With
ENCRYPTION_KEY set, the dev server's UI decodes payloads through the API's codec server
(/codec). The banner shows the development API keys when API_KEYS is unset. Ctrl-C or SIGTERM
stops everything and exits 0.

This file is the entry point; the parts, one concern each, are in scripts/runner/.
"""

import asyncio
import os
import signal
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # settings.py and friends live at the repository root

from runner.config import apply_run_defaults, child_env, read_settings  # noqa: E402
from runner.output import log  # noqa: E402
from runner.ports import check_ports, ports_to_check  # noqa: E402
from runner.startup import start_ordermill  # noqa: E402
from runner.supervisor import Supervisor  # noqa: E402


async def main_async() -> int:
    settings = read_settings()
    if settings is None:
        return 1
    own_temporal = apply_run_defaults(settings)
    if problems := check_ports(ports_to_check(settings, own_temporal=own_temporal)):
        for problem in problems:
            log(problem)
        return 1
    supervisor = Supervisor(child_env(settings, own_temporal=own_temporal))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.on_signal, sig)
    return await supervisor.run(
        lambda: start_ordermill(supervisor, settings, own_temporal=own_temporal)
    )


def main() -> None:
    os.chdir(ROOT)  # relative DATA_DIR and .env mean the repository's, as under `make run`
    try:
        code = asyncio.run(main_async())
    except Exception:  # a bug of ours: show where, then still leave no process behind
        traceback.print_exc()
        code = 1
    # A process that used a Temporal client can abort at interpreter exit (sdk-python #300,
    # "Fatal Python error: PyGILState_Release"); leave without running the interpreter's exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
