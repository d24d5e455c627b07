"""The benchmark's child processes (servers, client workers) die with it, however it ends.

Each child runs in its own session (a Ctrl-C at the terminal reaches only the conductor,
which then stops the children in order), so a signal to the conductor's process group does
not reach them. Three things make sure none outlives the conductor: on Linux the kernel
sends each child SIGTERM when the conductor dies, even by SIGKILL (`PR_SET_PDEATHSIG`, set
between fork and exec); a SIGTERM to the conductor becomes SystemExit, so its `finally`
blocks stop the children as a normal exit would; and an atexit hook terminates any child
still running when the interpreter exits.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

PR_SET_PDEATHSIG = 1
_live: set[subprocess.Popen[bytes]] = set()


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above: nobody will signal us
        os.kill(os.getpid(), signal.SIGTERM)


def spawn(cmd: list[str], stdout: Any = None, stderr: Any = None, cwd: str | Path | None = None,
          ) -> subprocess.Popen[bytes]:
    """Start a child of the benchmark: its own session, and it ends when the benchmark does."""
    parent = os.getpid()
    # A benchmark's servers stop when it has measured: no rollout drain on their SIGTERM.
    env = {**os.environ, "VOXLINE_DRAIN_TIMEOUT_S": os.environ.get("VOXLINE_DRAIN_TIMEOUT_S", "0")}
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, cwd=cwd, start_new_session=True, env=env,
                            stdin=subprocess.DEVNULL, preexec_fn=lambda: _die_with_parent(parent))
    _live.add(proc)
    return proc


def terminate_all(timeout: float = 10.0) -> None:
    """SIGTERM every child still running, then SIGKILL those that have not exited in `timeout`."""
    running = [p for p in _live if p.poll() is None]
    for proc in running:
        proc.terminate()
    for proc in running:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    _live.clear()


UNWIND_LIMIT_S = 30  # after a SIGTERM, the unwinding (closing calls, stopping servers) gets this long


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # A `finally` that hangs while unwinding (a peer connection that never closes on a starved
    # machine) would keep the benchmark, and the machine-wide benchmark lock, for good: seen
    # for 20 minutes after `timeout 400`. SIGALRM's default action then ends the process; the
    # kernel still stops the children (PR_SET_PDEATHSIG).
    signal.alarm(UNWIND_LIMIT_S)
    raise SystemExit(128 + signum)


def stop_children_on_exit() -> None:
    """Call at the start of a benchmark: SIGTERM unwinds it, and exit stops its children."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    atexit.unregister(terminate_all)  # once, however many runs a process makes
    atexit.register(terminate_all)
