"""`voxline bench`: voice-to-voice latency and concurrent-session capacity, measured by a caller.

- `stats`: percentiles, summaries, the stage breakdown, tables and the report text (pure).
- `system`: machine facts, /proc CPU and RSS sampling, free ports, the server subprocess.
- `latency`: latency mode (default): one call at a time against `voxline run` or `--server`.
- `capacity`: capacity mode (`--sessions N`): the conductor, its samples and summary.
- `capacity_worker`: a capacity-mode client process driving its share of the N callers.
- `capacity_server`, `fixed_backends`: the capacity mode's server (everything real but the models).
- `children`: the benchmark's child processes end when it does (SIGTERM, SIGKILL, exit).
- `wer`: word error rate mode (`--wer`): the same spoken corpus from the file and over calls.
- `answers`, `answers_corpus`, `answers_report`: answers mode (`--answers`): spoken questions
  scored by expected words, per configuration and group.
- `turns`, `turns_corpus`, `turns_caller`: turn-taking mode (`--turns`): the cases, a caller
  that echoes the agent back, the table; `turns_echo`: the echo front ends compared offline.
"""

from __future__ import annotations

import argparse
import sys

from voxline.bench.capacity import capacity_main
from voxline.bench.children import stop_children_on_exit
from voxline.bench.latency import latency_main


async def bench_main(args: argparse.Namespace) -> int:
    """`voxline bench`: latency (default), capacity (`--sessions N`), word error rate (`--wer`),
    turn-taking (`--turns`) or answers (`--answers`)."""
    for name, default in (("timeout", 60.0), ("turn_gap", 2.0), ("ramp_interval", 0.15), ("spread", 6.0),
                          ("client_procs", 0), ("capacity_server", None), ("per_kind", 3),
                          ("real_models", False), ("at_once", 0.0)):
        if not hasattr(args, name):
            setattr(args, name, default)
    stop_children_on_exit()
    try:
        if getattr(args, "wer", False):
            from voxline.bench.wer import wer_main

            return await wer_main(args)
        if getattr(args, "answers", False):
            from voxline.bench.answers import answers_main

            return await answers_main(args)
        if getattr(args, "turns", False):
            from voxline.bench.turns import turns_main

            return await turns_main(args)
        if args.sessions and args.sessions > 0:
            return await capacity_main(args)
        return await latency_main(args)
    except RuntimeError as exc:
        print(f"voxline bench: {exc}", file=sys.stderr)
        return 2
