"""No `asyncio.wait_for` in voxline: `asyncio.timeout` instead, everywhere.

On Python 3.11 `asyncio.wait_for` returns the awaited result instead of raising when the
task is cancelled in the few loop steps after that result became ready, so the cancel is
lost: a barge-in let the interrupted reply's LLM run on (`agent/pipeline.with_timeout`), and
an agent closed as a taken-over session's history arrived never ended
(`tests/unit/agent/test_session_agent.py`). `asyncio.timeout` has no such gap.
"""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "voxline"


def test_no_source_file_uses_asyncio_wait_for() -> None:
    uses = [f"{path.relative_to(SRC)}:{n}" for path in sorted(SRC.rglob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"\basyncio\.wait_for\(|^\s*from asyncio import .*\bwait_for\b", line)]
    assert not uses, f"asyncio.wait_for (loses a cancel on Python 3.11; use asyncio.timeout): {uses}"
