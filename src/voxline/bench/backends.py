"""The back-ends a latency run measures: the embedded models inside `voxline run`, or the same
models behind OpenAI-compatible HTTP (`voxline serve stt|llm|tts`, started here on this
machine, or services given by URL), or both, asked the same questions in turn.

The remote configuration is the same `voxline run` with its `openai` back-ends pointed at the
services, so the two differ only in where the models run and how they are reached.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from voxline.bench.system import ServerProcess, free_port

KINDS = ("stt", "llm", "tts")
CONFIGS = {"embedded": ("embedded",), "remote": ("remote",), "both": ("embedded", "remote")}


def remote_flags(urls: dict[str, str]) -> list[str]:
    """`voxline run` flags that point its three back-ends at OpenAI-compatible services."""
    flags: list[str] = []
    for kind in KINDS:
        flags += [f"--{kind}", "openai", f"--{kind}-url", urls[kind]]
    return flags


def service_processes(work: Path, given: dict[str, str | None]) -> tuple[dict[str, str], list[ServerProcess]]:
    """The services' URLs: those given, and a `voxline serve KIND` to start for each of the others."""
    urls: dict[str, str] = {}
    procs: list[ServerProcess] = []
    for kind in KINDS:
        url = given.get(kind)
        if url:
            urls[kind] = url.rstrip("/")
            continue
        port = free_port()
        urls[kind] = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "voxline", "serve", kind, "--host", "127.0.0.1", "--port", str(port),
               "--log-format", "text"]
        procs.append(ServerProcess(cmd, work / f"serve-{kind}.log", urls[kind], ready_path="/readyz"))
    return urls, procs


def run_server(work: Path, name: str, extra: list[str]) -> ServerProcess:
    """The `voxline run` of one configuration, on a free port, logging to `work`."""
    port = free_port()
    cmd = [sys.executable, "-m", "voxline", "run", "--port", str(port), "--log-format", "text",
           "--session-create-rate-per-min", "10000", *extra]
    return ServerProcess(cmd, work / f"server-{name}.log", f"http://127.0.0.1:{port}")


async def start_all(procs: list[ServerProcess]) -> None:
    """Start them together (loading is mostly reading weights); if one fails, stop the rest."""
    for proc in procs:
        print(f"starting {' '.join(proc.cmd[1:])} (log: {proc.log_path})", file=sys.stderr, flush=True)
    try:
        await asyncio.gather(*(p.start() for p in procs))
    except BaseException:
        for proc in procs:
            proc.stop()
        raise
