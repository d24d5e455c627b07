"""Capacity benchmark: `voxline bench --sessions N` for a ladder of N, stopping at the first
N that does not hold (a session failed, a turn went unanswered, or more than 1 % of frames
were late or lost).

    .venv/bin/python benchmarks/capacity.py --ladder 10,25,50,100 --duration 30 [--out-dir DIR]
    .venv/bin/python benchmarks/capacity.py --sessions 25            # one run, same as voxline bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from voxline.bench import bench_main
from voxline.bench.stats import CAPACITY_HEADER, capacity_row, format_table
from voxline.cli import build_parser, main
from voxline.logs import setup_logging

LIMIT = 0.01  # late or lost frames above this share of the frames expected: N does not hold


def holds(run: dict[str, Any]) -> tuple[bool, str]:
    """Whether one run held, and why not."""
    c, s = run["clients"], run["server"]
    n = run["sessions"]
    expected = max(1, c["frames_expected"])
    if c["connected"] < n or c["sessions_failed"] or run.get("worker_errors"):
        return False, f"{n - c['connected']} not connected, {c['sessions_failed']} failed"
    if c["turns_answered"] < c["turns_asked"]:
        return False, f"{c['turns_asked'] - c['turns_answered']} turns unanswered"
    late = s.get("frames_late") or 0
    if late > LIMIT * expected:
        return False, f"{late} frames late at the server ({100 * late / expected:.1f} %)"
    lost = max(c["rtp_packets_lost"], c["frames_missing"])
    if lost > LIMIT * expected:
        return False, f"{lost} frames lost ({100 * lost / expected:.1f} %)"
    return True, "held"


async def ladder(sizes: list[int], rest: list[str], out_dir: Path) -> int:
    setup_logging("WARNING", "text")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sizes:
        out = out_dir / f"capacity-{n}.json"
        args = build_parser().parse_args(["bench", "--sessions", str(n), "--out", str(out), *rest])
        await bench_main(args)
        run = json.loads(out.read_text())
        ok, why = holds(run)
        rows.append(capacity_row(run) + [why])
        print(format_table(rows, CAPACITY_HEADER + ["verdict"]), flush=True)
        if not ok:
            print(f"stopping: N={n} did not hold ({why})", flush=True)
            break
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ladder", default=None, help="comma-separated session counts, e.g. 10,25,50,100")
    parser.add_argument("--out-dir", default="benchmarks/out", help="one JSON file per N (ladder mode)")
    known, rest = parser.parse_known_args()
    if known.ladder:
        sys.exit(asyncio.run(ladder([int(x) for x in known.ladder.split(",")], rest, Path(known.out_dir))))
    if "--sessions" not in rest:
        rest = ["--sessions", "10", *rest]
    sys.exit(main(["bench", *rest]))
