"""`voxline` command line: run | media | agent | serve | call | bench.

Every Settings field is also a flag (`--max-sessions 50`, `--bus kafka`, ...) on the server
commands; flags override `VOXLINE_*` environment variables, which override defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import typing
from collections.abc import Sequence
from typing import Any

from voxline.config import ConfigError, Settings
from voxline.logs import setup_logging

SERVER_PORTS = {"run": 8001, "media": 8001, "agent": 8002}
SERVICE_PORTS = {"stt": 8011, "llm": 8012, "tts": 8013}


def _add_settings_flags(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per Settings field; values stay text here and are checked by Settings (one error line)."""
    group = parser.add_argument_group("settings (each also read from VOXLINE_<NAME>)")
    for name, field in Settings.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        kind = field.annotation
        if kind is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None)
            continue
        choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else ()
        if choices:
            metavar = "{" + ",".join(str(c) for c in choices) + "}"
        elif typing.get_origin(kind) is tuple:
            metavar = "A,B"
        else:
            metavar = getattr(kind, "__name__", "VALUE").upper()
        group.add_argument(flag, dest=name, default=None, metavar=metavar,
                           help=f"default: {field.default!r}" if field.default not in ("", ()) else None)


def _settings(args: argparse.Namespace, **defaults: Any) -> Settings:
    """Settings for a server command: a command's own defaults (its port) lose to env and flags."""
    flags = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    return Settings.from_env(defaults=defaults, **flags)


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

    p = sub.add_parser("call", help="call a server with an audio file as the microphone; print each turn")
    p.add_argument("wav", help="question audio: any file FFmpeg decodes (WAV, MP3, FLAC...), any rate and channels")
    p.add_argument("--server", default="http://127.0.0.1:8001", help="server base URL")
    p.add_argument("--out", help="write the reply audio to this WAV file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--token", default=None, help="bearer token, if the server requires one")
    p.add_argument("--timeout", type=float, default=60.0, help="give up on a reply after this many seconds")
    p.add_argument("--split-silence", type=float, default=1.0,
                   help="quiet this long (s) separates two questions of the file; each waits for the last reply (0: one)")

    p = sub.add_parser("bench", help="voice-to-voice latency and capacity benchmarks")
    p.add_argument("--server", default=None, help="benchmark this server instead of starting one")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backends", choices=("embedded", "remote", "both"), default="embedded",
                   help="latency mode: the embedded models, the same models behind `voxline serve` (OpenAI API, "
                        "started here unless --stt-url/--llm-url/--tts-url), or both asked in turn, side by side")
    for kind in ("stt", "llm", "tts"):
        p.add_argument(f"--{kind}-url", default=None, help=f"latency mode, remote: this {kind.upper()} service "
                                                           "instead of starting `voxline serve " + kind + "`")
    p.add_argument("--sessions", type=int, default=0, help="capacity mode: this many concurrent calls")
    p.add_argument("--wer", action="store_true",
                   help="word error rate mode: a spoken corpus transcribed from the files and over real calls")
    p.add_argument("--wer-limit", type=int, default=0, help="wer mode: only the first N utterances (0: all 48)")
    p.add_argument("--wer-no-replay", action="store_true",
                   help="wer mode: skip the offline replay of the call path (codec, turn cut) beside the calls")
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
    p.add_argument("--real-models", action="store_true",
                   help="capacity mode: the server runs the real embedded models (default: fixed-response back-ends)")
    p.add_argument("--at-once", type=float, default=0.0,
                   help="capacity mode: every caller asks at the same moment, once every this many seconds (0: off)")
    p.add_argument("--capacity-server", default=None,
                   help="capacity mode: server script (default: python -m voxline.bench.capacity_server)")
    p.add_argument("--turns", action="store_true",
                   help="turn-taking mode: pauses, backchannels, interruptions, echo (voxline.bench.turns)")
    p.add_argument("--per-kind", type=int, default=3, help="turn-taking mode: cases of each kind")
    p.add_argument("--kinds", default=None,
                   help="turn-taking mode: only these kinds, comma-separated (question,paused,backchannel,"
                        "interruption,echo; default all): a long run split into several")
    p.add_argument("--answers", action="store_true",
                   help="answers mode: spoken questions (facts, arithmetic, advice, follow-ups) scored by expected words")
    p.add_argument("--answers-config", default=None,
                   help="answers mode: JSON file of configurations to compare, {name: {setting: value}}, a server each")
    p.add_argument("--answers-split", choices=("test", "tune", "all"), default="test",
                   help="answers mode: the held-out questions (test, reported), those tuned on, or both")
    p.add_argument("--answers-limit", type=int, default=0, help="answers mode: only the first N items (0: all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:  # every setting is checked before anything is imported, loaded or bound
        settings = _command_settings(args)
    except ConfigError as exc:
        print(f"voxline: {exc}", file=sys.stderr)
        return 2
    try:
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:  # bad configuration found while starting: a clear line, no traceback
        print(f"voxline: {exc}", file=sys.stderr)
        return 2


def _command_settings(args: argparse.Namespace) -> Settings:
    if args.command in SERVER_PORTS:
        return _settings(args, port=SERVER_PORTS[args.command])
    if args.command == "serve":
        return _settings(args, port=SERVICE_PORTS[args.kind])
    return Settings.from_env()


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    cmd = args.command
    if cmd in ("run", "agent", "serve", "bench"):
        from voxline.services import openmp

        openmp.configure(settings.model_wait_policy)  # before any model library loads
        if cmd == "serve" and args.kind == "llm" and settings.serve_llm_nice:
            os.nice(settings.serve_llm_nice)  # inherited by every thread started from here on
    if cmd in ("run", "agent", "serve"):  # a bad model file: one line now, not after seconds of imports
        from voxline.services import model_files

        if cmd == "serve":
            model_files.check(settings.replace(stt="whisper", llm="llamacpp", tts="piper"), stages=(args.kind,))
        else:
            model_files.check(settings)
    if cmd in SERVER_PORTS:
        from voxline import processes

        setup_logging(settings.log_level, settings.log_format)
        target = {"run": processes.run_all, "media": processes.run_media, "agent": processes.run_agent}[cmd]
        asyncio.run(target(settings))
        return 0
    if cmd == "serve":
        from voxline.modelserver.app import serve
        from voxline.processes import run_until_signal

        setup_logging(settings.log_level, settings.log_format)
        asyncio.run(run_until_signal(serve(args.kind, settings, settings.host, settings.port)))
        return 0
    if cmd in ("call", "bench"):
        from voxline.rtc.hooks import use_host_addresses

        use_host_addresses(settings.rtc_host_addresses)
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
