"""Voice-to-voice latency benchmark: a thin wrapper for `voxline bench` (latency mode).

    .venv/bin/python benchmarks/latency.py --repeats 3 [--server URL] [--json] [--out FILE]
"""

from __future__ import annotations

import sys

from voxline.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *[a for a in sys.argv[1:] if a != "--sessions"]]))
