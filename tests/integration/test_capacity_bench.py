"""`voxline bench --sessions N`, run for real at a small N: the capacity server (real WebRTC,
bus, VAD and agent; fixed-response models) and a client process, then the JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_capacity_bench_reports_frames_cpu_and_memory(tmp_path: Path) -> None:
    out = tmp_path / "capacity.json"
    # From a directory outside the checkout: the capacity server comes from the package, as installed.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    run = subprocess.run([sys.executable, "-m", "voxline", "bench", "--sessions", "2", "--duration", "8",
                          "--out", str(out)], capture_output=True, text=True, timeout=240, check=False,
                         cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "frames late (srv)" in run.stdout  # the table
    report = json.loads(out.read_text())
    clients, server = report["clients"], report["server"]
    assert clients["connected"] == 2 and not clients["errors"] and report["clients"]["sessions_lost"] == 0
    assert clients["turns_asked"] >= 2 and clients["turns_answered"] == clients["turns_asked"]
    assert clients["frames_received"] > 50 and clients["rtp_packets_lost"] == 0
    assert clients["v2v_ms"]["p50"] > 500  # the end-of-turn wait alone is 500 ms
    assert server["frames_late"] is not None and server["sessions_active_max"] == 2
    assert server["cpu_pct"] > 0 and server["rss_mb"] > 50 and clients["cpu_pct"] > 0
    assert report["settings"]["spread_s"] == 6.0 and "FIXED-RESPONSE" in report["settings"]["server_kind"]
