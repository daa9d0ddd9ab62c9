"""`python bench/workers.py N`: N ordermill workers on the one task queue, as one process tree.

The bench measures a process with its children, so the workers' CPU and memory add up under
"worker". A SIGTERM or SIGINT is passed on to each, and the first to exit non-zero ends all.
"""

import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    count = int(sys.argv[1])
    workers = [subprocess.Popen([sys.executable, str(ROOT / "worker.py")]) for _ in range(count)]

    def stop(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [worker.wait() for worker in workers]
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main())
