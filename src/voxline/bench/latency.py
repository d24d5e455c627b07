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

from voxline.bench.stats import emit_report, latency_report_text, percentile, runs_summary, stage_breakdown, summarize
from voxline.bench.system import ServerProcess, free_port, machine_busy_pct, machine_info, system_cpu

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


async def run_latency(server: str, questions: Sequence[tuple[str, np.ndarray]], repeats: int,
                      timeout: float, pause_s: float = 0.5) -> list[dict[str, Any]]:
    """Call `server` once per question x repeat, sequentially, a fresh session each time."""
    from voxline.client.call import call

    turns: list[dict[str, Any]] = []
    for rep in range(repeats):
        for text, samples in questions:
            started = time.time()
            cpu0 = system_cpu()
            try:
                result = await asyncio.wait_for(call(server, samples, timeout=timeout), timeout + 30)
            except TimeoutError:
                turns.append({"question": text, "repeat": rep, "ok": False,
                              "error": f"call did not finish within {timeout + 30:.0f} s"})
                continue
            server_m = result.turn_metrics[-1] if result.turn_metrics else {}
            v2v = result.voice_to_voice_ms
            sv2v = server_m.get("server_voice_to_voice_ms")
            ok = result.error is None and v2v is not None and bool(result.reply_text)
            error = result.error or (None if ok else
                                     "no reply sound after the question" if v2v is None else "no reply text")
            if ok:
                error = check_turn(text, result.transcript, result.reply_text)
                ok = error is None
            turns.append({
                "question": text, "repeat": rep, "ok": ok, "error": error,
                "session_id": result.session_id, "transcript": result.transcript, "reply_text": result.reply_text,
                "voice_to_voice_ms": v2v, "voice_to_voice_unbuffered_ms": result.voice_to_voice_unbuffered_ms,
                "transport_ms": round(v2v - sv2v, 1) if v2v is not None and isinstance(sv2v, (int, float)) else None,
                "server": server_m, "server_turns": len(result.turn_metrics),
                "reply_audio_s": round(result.reply_audio.size / 48_000, 2),
                "call_s": round(time.time() - started, 1),
                "machine_busy_pct": machine_busy_pct(cpu0, system_cpu()),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            })
            print(f"  [{len(turns)}/{repeats * len(questions)}] {text!r}: "
                  f"{f'{v2v:.0f} ms' if v2v is not None else 'n/a'}"
                  f"{'' if ok else '  FAILED: ' + str(error)}", file=sys.stderr, flush=True)
            await asyncio.sleep(pause_s)
    return turns


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
    server = args.server
    proc: ServerProcess | None = None
    settings: dict[str, Any] = {"repeats": args.repeats, "questions": [q for q, _ in questions],
                                "timeout_s": args.timeout,
                                "env": {k: v for k, v in os.environ.items() if k.startswith("VOXLINE_")}}
    if server is None:
        port = free_port()
        server = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "voxline", "run", "--port", str(port), "--log-format", "text",
               "--session-create-rate-per-min", "10000"]
        proc = ServerProcess(cmd, work / "server.log", server)
        settings.update(server_kind="voxline run (embedded default models), started by the benchmark",
                        server_cmd=" ".join(cmd[1:]), server_log=str(proc.log_path))
    else:
        settings["server_kind"] = "external (--server)"
    settings["server"] = server
    try:
        if proc is not None:
            print(f"starting {' '.join(proc.cmd[1:])} (log: {proc.log_path})", file=sys.stderr, flush=True)
            await proc.start()
        turns = await run_latency(server, questions, args.repeats, args.timeout)
    finally:
        if proc is not None:
            settings["server_exit_code"] = proc.stop()
    report = latency_report(turns, machine, settings)
    emit_report(report, args, latency_report_text)
    return 0 if report["failed"] == 0 and report["voice_to_voice_ms"]["n"] else 1
