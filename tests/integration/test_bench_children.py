"""`voxline bench` leaves no child behind: killed (SIGKILL) or stopped (SIGTERM, as `timeout`
does), its `voxline run` server goes too. The children run in their own sessions, so nothing
but the benchmark's own measures (PR_SET_PDEATHSIG, the SIGTERM handler) can stop them.
The benchmark runs from a directory outside the source tree, as an installed package would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_bench_leaves_no_voxline_run_behind(sig: signal.Signals, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    bench = subprocess.Popen([sys.executable, "-m", "voxline", "bench", "--repeats", "1"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers: list[int] = []
    try:
        def server_started() -> bool:
            servers[:] = [p for p in children_of(bench.pid)
                          if b"run" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")]
            return bool(servers)

        assert wait_until(server_started, 60), "the bench started no `voxline run`"
        bench.send_signal(sig)
        bench.wait(30)
        assert wait_until(lambda: not any(alive(p) for p in servers), 30), \
            f"`voxline run` {servers} outlived the bench ({sig.name})"
    finally:
        bench.kill()
        bench.wait()
        for pid in servers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
