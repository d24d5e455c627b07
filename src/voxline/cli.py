"""`voxline` command line: run | media | agent | serve | call | bench.

Every Settings field is also a flag (`--max-sessions 50`, `--bus kafka`, ...) on the server
commands; flags override `VOXLINE_*` environment variables, which override defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from voxline.config import Settings
from voxline.logs import setup_logging

SERVER_PORTS = {"run": 8001, "media": 8001, "agent": 8002}
SERVICE_PORTS = {"stt": 8011, "llm": 8012, "tts": 8013}


def _add_settings_flags(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    group = parser.add_argument_group("settings (each also read from VOXLINE_<NAME>)")
    for f in dataclasses.fields(Settings):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
        if kind == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif kind.startswith("tuple"):
            group.add_argument(flag, dest=f.name, default=None, metavar="A,B",
                               type=lambda s: tuple(p.strip() for p in s.split(",") if p.strip()))
        else:
            group.add_argument(flag, dest=f.name, default=None, type={"int": int, "float": float}.get(kind, str))


def _settings(args: argparse.Namespace, **defaults: Any) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    flags = {k: v for k, v in vars(args).items() if k in names and v is not None}
    base = Settings.from_env()
    # A command's own default port applies unless env or a flag chose one.
    env_port = Settings.from_env({}).port != base.port
    for key, value in defaults.items():
        if key not in flags and not (key == "port" and env_port):
            flags[key] = value
    return base.replace(**flags)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxline", description="Real-time voice agent server.")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, help_ in (("run", "everything in one process: media server, agent, embedded models (default)"),
                        ("media", "the WHIP media server only (needs a shared bus: --bus kafka)"),
                        ("agent", "the orchestrator only (needs a shared bus: --bus kafka)")):
        p = sub.add_parser(name, help=help_)
        _add_settings_flags(p)

    p = sub.add_parser("serve", help="an embedded model as an OpenAI-compatible HTTP service")
    p.add_argument("kind", choices=sorted(SERVICE_PORTS))
    _add_settings_flags(p)

    p = sub.add_parser("call", help="call a server with a WAV file as the microphone; print the reply")
    p.add_argument("wav", help="question audio (WAV, any rate and channel count)")
    p.add_argument("--server", default="http://127.0.0.1:8001", help="server base URL")
    p.add_argument("--out", help="write the reply audio to this WAV file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--token", default=None, help="bearer token, if the server requires one")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")

    p = sub.add_parser("bench", help="voice-to-voice latency and capacity benchmarks")
    p.add_argument("--server", default=None, help="benchmark this server instead of starting one")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sessions", type=int, default=0, help="capacity mode: this many concurrent calls")
    p.add_argument("--duration", type=float, default=30.0, help="capacity mode: seconds per run")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", default=None, help="write the JSON results to this file")
    p.add_argument("--timeout", type=float, default=60.0, help="latency mode: give up on one call after this")
    p.add_argument("--turn-gap", type=float, default=2.0, help="capacity mode: seconds between a reply and the next question")
    p.add_argument("--ramp-interval", type=float, default=0.15, help="capacity mode: seconds between session starts")
    p.add_argument("--spread", type=float, default=6.0,
                   help="capacity mode: callers' first questions spread over this many seconds (about one "
                        "question-reply-pause cycle), pauses drawn from 0.5-1.5 x --turn-gap; 0: all in lockstep")
    p.add_argument("--client-procs", type=int, default=0, help="capacity mode: client processes (0: 1 up to 20 sessions, else 2)")
    p.add_argument("--server-procs", type=int, default=1,
                   help="capacity mode: server processes (one per core), callers spread over them")
    p.add_argument("--capacity-server", default=None, help="capacity mode: server script (default benchmarks/capacity_server.py)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:  # bad configuration: a clear line, no traceback
        print(f"voxline: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd in SERVER_PORTS:
        from voxline import processes

        settings = _settings(args, port=SERVER_PORTS[cmd])
        setup_logging(settings.log_level, settings.log_format)
        target = {"run": processes.run_all, "media": processes.run_media, "agent": processes.run_agent}[cmd]
        asyncio.run(target(settings))
        return 0
    if cmd == "serve":
        from voxline.modelserver.app import serve
        from voxline.processes import run_until_signal

        settings = _settings(args, port=SERVICE_PORTS[args.kind])
        setup_logging(settings.log_level, settings.log_format)
        asyncio.run(run_until_signal(serve(args.kind, settings, settings.host, settings.port)))
        return 0
    if cmd in ("call", "bench"):
        from voxline.rtc.hooks import use_host_addresses

        use_host_addresses(Settings.from_env().rtc_host_addresses)
    if cmd == "call":
        from voxline.client.call import call_main

        setup_logging("WARNING", "text")
        return asyncio.run(call_main(args))
    if cmd == "bench":
        from voxline.bench import bench_main

        setup_logging("WARNING", "text")
        return asyncio.run(bench_main(args))
    raise AssertionError(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
