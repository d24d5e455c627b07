"""Latency mode of `voxline bench`: start `voxline run` (or use `--server`), speak espeak-ng
questions one call at a time over real WebRTC, and report the voice-to-voice latency the caller
hears (end of the question's speech sent -> first non-silent reply sample received, both on this
machine's clock) with the server's own `turn.metrics` stage breakdown beside it. The server's
timestamps never replace the caller's measure."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxline.bench.backends import CONFIGS, KINDS, remote_flags, run_server, service_processes, start_all
from voxline.bench.stats import (
    comparison_report_text,
    emit_report,
    latency_report_text,
    percentile,
    runs_summary,
    stage_breakdown,
    summarize,
)
from voxline.bench.system import ServerProcess, machine_busy_pct, machine_info, system_cpu

# Benchmark questions (none of them a test sentence), each with words a right answer contains
# (any one will do) and the question's own content words that must be heard. A misheard
# question or a wrong answer is a failed turn, reported as such, never a success.
QUESTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "What is the capital of Italy?": (frozenset({"rome"}), frozenset({"capital", "italy"})),
    "How many days are in a week?": (frozenset({"seven", "7"}), frozenset({"days", "week"})),
    "What do bees make?": (frozenset({"honey", "wax", "beeswax"}), frozenset({"bees"})),
    "What is the opposite of hot?": (frozenset({"cold", "cool", "cooler", "colder"}), frozenset({"opposite", "hot"})),
    "What should I wear when it rains?": (frozenset({"raincoat", "umbrella", "coat", "jacket", "boots", "waterproof"}),
                                          frozenset({"wear", "rains"})),
    "How do I boil an egg?": (frozenset({"water", "boil", "pot", "minutes", "boiling"}), frozenset({"boil", "egg"})),
}
WORD = re.compile(r"[a-z0-9']+")


def check_turn(question: str, transcript: str, reply: str) -> str | None:
    """Why this turn is not a success (misheard, or a wrong answer), or None if it is one."""
    answers, heard_words = QUESTIONS.get(question, (frozenset(), frozenset()))
    heard = set(WORD.findall(transcript.lower()))
    missing = sorted(w for w in heard_words if w not in heard and w.rstrip("s") not in heard)
    if missing:
        return f"misheard: {transcript!r} lacks {', '.join(missing)}"
    if answers and not answers & set(WORD.findall(reply.lower())):
        return f"wrong answer: {reply!r} has none of {', '.join(sorted(answers))}"
    return None


def make_questions(directory: Path, texts: Sequence[str] = tuple(QUESTIONS)) -> list[tuple[str, Path]]:
    """Speak each text with espeak-ng into a 16-bit WAV in `directory`."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    out = []
    for i, text in enumerate(texts):
        path = directory / f"q{i}.wav"
        subprocess.run([espeak, "-w", str(path), text], check=True, timeout=30, capture_output=True)
        out.append((text, path))
    return out


async def run_latency(servers: dict[str, str], questions: Sequence[tuple[str, np.ndarray]], repeats: int,
                      timeout: float, pause_s: float = 0.5) -> list[dict[str, Any]]:
    """Call each server once per question x repeat, sequentially, a fresh session each time.

    With several servers (back-end configurations) each question goes to all of them in turn,
    in an order that alternates by repeat, so a change in the machine's load hits them alike.
    """
    turns: list[dict[str, Any]] = []
    total = repeats * len(questions) * len(servers)
    for rep in range(repeats):
        names = list(servers) if rep % 2 == 0 else list(reversed(servers))
        for text, samples in questions:
            for name in names:
                turn = await measure_turn(servers[name], text, samples, rep, timeout)
                turn["backends"] = name
                turns.append(turn)
                v2v = turn.get("voice_to_voice_ms")
                print(f"  [{len(turns)}/{total}] {name if len(servers) > 1 else ''}{' ' if len(servers) > 1 else ''}"
                      f"{text!r}: {f'{v2v:.0f} ms' if v2v is not None else 'n/a'}"
                      f"{'' if turn['ok'] else '  FAILED: ' + str(turn['error'])}", file=sys.stderr, flush=True)
                await asyncio.sleep(pause_s)
    return turns


async def measure_turn(server: str, text: str, samples: np.ndarray, rep: int, timeout: float) -> dict[str, Any]:
    """One call asking `text`: the caller's voice-to-voice, the server's stages, and the checks."""
    from voxline.client.call import call

    started = time.time()
    cpu0 = system_cpu()
    try:
        async with asyncio.timeout(timeout + 30):
            result = await call(server, samples, timeout=timeout)
    except TimeoutError:
        return {"question": text, "repeat": rep, "ok": False, "error": f"call did not finish within {timeout + 30:.0f} s"}
    server_m = result.turn_metrics[-1] if result.turn_metrics else {}
    v2v = result.voice_to_voice_ms
    sv2v = server_m.get("server_voice_to_voice_ms")
    ok = result.error is None and v2v is not None and bool(result.reply_text)
    error = result.error or (None if ok else "no reply sound after the question" if v2v is None else "no reply text")
    if ok:
        error = check_turn(text, result.transcript, result.reply_text)
        ok = error is None
    return {
        "question": text, "repeat": rep, "ok": ok, "error": error,
        "session_id": result.session_id, "transcript": result.transcript, "reply_text": result.reply_text,
        "voice_to_voice_ms": v2v, "voice_to_voice_unbuffered_ms": result.voice_to_voice_unbuffered_ms,
        "transport_ms": round(v2v - sv2v, 1) if v2v is not None and isinstance(sv2v, (int, float)) else None,
        "server": server_m, "server_turns": len(result.turn_metrics),
        "reply_audio_s": round(result.reply_audio.size / 48_000, 2),
        "call_s": round(time.time() - started, 1),
        "machine_busy_pct": machine_busy_pct(cpu0, system_cpu()),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def latency_report(turns: list[dict[str, Any]], machine: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The one JSON object of a latency run: the headline is the median of the runs' p50 and p95
    (each run = every question, `repeat` times), with their spread, not the best run."""
    ok = [t for t in turns if t.get("ok")]
    return {"voice_to_voice_ms": summarize([t["voice_to_voice_ms"] for t in ok]),
            "voice_to_voice_unbuffered_ms": summarize([t.get("voice_to_voice_unbuffered_ms") for t in ok]),
            "runs": runs_summary(turns),
            "stages_ms": stage_breakdown(turns),
            "failed": len(turns) - len(ok),
            "machine_busy_pct_p50": percentile([t["machine_busy_pct"] for t in turns
                                                if t.get("machine_busy_pct") is not None], 50),
            "turns": turns, "machine": machine, "settings": settings}


async def latency_main(args: argparse.Namespace) -> int:
    from voxline.client.audio import read_wav_mono

    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="voxline-bench-"))
    questions = [(text, read_wav_mono(path)) for text, path in make_questions(work)]
    names = CONFIGS[getattr(args, "backends", "embedded")]
    settings: dict[str, Any] = {"repeats": args.repeats, "questions": [q for q, _ in questions],
                                "timeout_s": args.timeout,
                                "env": {k: v for k, v in os.environ.items() if k.startswith("VOXLINE_")}}
    servers: dict[str, str] = {}
    procs: list[ServerProcess] = []
    services: list[ServerProcess] = []
    if args.server is not None:
        if len(names) > 1 or names[0] != "embedded":
            raise RuntimeError("--server measures that server as it is configured: leave out --backends")
        servers["embedded"] = args.server
        settings["server_kind"] = "external (--server)"
    else:
        urls: dict[str, str] = {}
        if "remote" in names:
            urls, services = service_processes(work, {k: getattr(args, f"{k}_url", None) for k in KINDS})
            settings["services"] = urls
        procs = list(services)
        for name in names:
            proc = run_server(work, name, remote_flags(urls) if name == "remote" else [])
            procs.append(proc)
            servers[name] = proc.url
        settings.update(server_kind=" and ".join(f"voxline run ({n} models)" for n in names) + ", started by the benchmark",
                        server_cmds={n: " ".join(p.cmd[1:]) for n, p in zip(names, procs[len(services):])})
    settings["server"] = servers[names[0]] if len(names) == 1 else servers
    try:
        if services:
            await start_all(services)  # before the servers, which check their back-ends at start-up
        await start_all([p for p in procs if p not in services])
        turns = await run_latency(servers, questions, args.repeats, args.timeout)
    finally:
        settings["server_exit_codes"] = [p.stop() for p in reversed(procs)]
    if len(names) == 1:
        report = latency_report(turns, machine, settings)
        failed = report["failed"] or not report["voice_to_voice_ms"]["n"]
        emit_report(report, args, latency_report_text)
    else:
        report = {"configs": {n: latency_report([t for t in turns if t["backends"] == n], machine, settings)
                              for n in names}, "machine": machine, "settings": settings}
        failed = any(r["failed"] or not r["voice_to_voice_ms"]["n"] for r in report["configs"].values())
        emit_report(report, args, comparison_report_text)
    return 1 if failed else 0
