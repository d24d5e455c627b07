"""A benchmark told to stop (SIGTERM, as `timeout` sends) ends even if its unwinding hangs, so it
never holds the machine-wide benchmark lock for good."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

SCRIPT = """
import time
from voxline.bench import children
children.UNWIND_LIMIT_S = 1
children.stop_children_on_exit()
try:
    print("ready", flush=True)  # inside the try: a SIGTERM right after it must meet the hung finally
    time.sleep(60)
finally:
    while True:  # a close that never returns
        time.sleep(0.05)
"""


def test_a_hung_unwind_after_sigterm_still_ends_the_benchmark() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        assert code == -signal.SIGALRM  # ended by the alarm, not by finishing the hung `finally`
        assert time.monotonic() - started < 20
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
