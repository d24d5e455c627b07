"""`voxline bench --turns`: turn-taking measured by callers over real WebRTC.

Each case of `voxline.bench.turns_corpus` is one call (a fresh session), against `voxline run`
started here or `--server`. All times are the caller's: when it sent its speech, when the
agent's voice arrived, plus the server's events (same clock on one machine).
  false end of turn    paused utterances the agent answered (its voice heard) before they ended
  late end of turn     complete questions whose end of turn took the longest wait there is
  false interruption   backchannels and coughs that interrupted the reply
  reaction             start of a real interruption -> the agent's voice stops (p50, p95)
  self-interruption    interruptions during a reply to a caller that echoes it back
  voice-to-voice       end of a complete question -> first sound of the answer (p50, p95)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxline.audio.resample import resample_s16
from voxline.bench.stats import emit_report, percentile
from voxline.bench.system import ServerProcess, free_port, machine_info
from voxline.bench.turns_caller import EchoCaller
from voxline.bench.turns_corpus import KINDS, Case, Speak, build
from voxline.client.audio import RATE, SPEECH_THRESHOLD, speech_end_sample
from voxline.client.caller import Caller
from voxline.config import Settings

GAP_S = 0.3  # the agent's voice has stopped once nothing was heard for this long
BARGE_AFTER_S = 1.0  # a backchannel or interruption comes this long into the reply
REPLY_TOKENS = 40  # the started server's llm_max_tokens


@dataclass
class Outcome:
    kind: str
    name: str
    ok: bool = True  # the call went as scripted (a reply came, ...)
    error: str = ""
    voice_to_voice_ms: float | None = None
    end_of_turn_ms: float | None = None  # end of the caller's speech -> the turn committed
    answered_early: bool = False  # the agent's voice came before the caller had finished
    interrupted: bool = False  # an `interruption` event after what was said during the reply
    reaction_ms: float | None = None  # that speech began -> the agent's voice stopped
    answered_after: bool = False  # an interruption was answered
    played_on: bool = False  # the agent's voice went on after what was said during the reply
    heard: list[str] = field(default_factory=list)  # the call's final transcripts (the caller's view, for --json)


def first_loud(samples: np.ndarray) -> int:
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SPEECH_THRESHOLD)
    return int(loud[0]) if loud.size else 0


async def run_case(server: str, case: Case, timeout: float = 60.0) -> Outcome:
    """One call: say the case's script, watch what the agent does."""
    out = Outcome(case.kind, case.name)
    caller: Caller = (EchoCaller(server, case.echo_delay_ms, case.echo_gain_db, move_ms=case.echo_move_ms)
                      if case.kind == "echo"
                      else Caller(server))
    try:
        await caller.connect()
        await caller.client.set_listening(True)
        await asyncio.sleep(0.4)
        started = time.time()
        end = await caller.say(case.said)
        if case.kind in ("question", "paused"):
            if not await caller.wait_reply_done(after=1, timeout=timeout):
                out.ok, out.error = False, "no complete reply"
            heard = caller.first_sound_after(started)
            out.answered_early = heard is not None and heard < end - 0.05
            reply = caller.first_sound_after(end)
            if reply is not None:
                out.voice_to_voice_ms = round((reply - end) * 1000, 1)
            commits = [e["ts"] for e in caller.of_type("state") if e.get("state") == "thinking" and e["ts"] >= end - 0.5]
            if commits:
                out.end_of_turn_ms = round((commits[0] - end) * 1000, 1)
            return out
        speaking = await caller.wait_for(lambda e: e.get("type") == "state" and e.get("state") == "agent_speaking",
                                         timeout)
        if speaking is None:
            out.ok, out.error = False, "the agent never spoke"
            return out
        if case.during is not None:
            await asyncio.sleep(BARGE_AFTER_S)
            await caller.say(case.during)
            assert caller.source.played_at is not None
            began = caller.source.played_at + first_loud(case.during) / RATE
            said_end = caller.source.played_at + speech_end_sample(case.during) / RATE
        else:
            began = said_end = speaking["ts"]
        if case.kind == "interruption":
            hit = await caller.wait_for(lambda e: e.get("type") == "interruption" and e["ts"] >= began - 0.2, 5.0)
            out.interrupted = hit is not None
            out.answered_after = await caller.wait_reply_done(after=2, timeout=timeout)
            out.reaction_ms = _stopped_ms(caller.recorder.sounds, began, said_end)
        else:
            await caller.wait_reply_done(after=1, timeout=timeout)
            out.interrupted = any(e["ts"] >= began - 0.2 for e in caller.of_type("interruption"))
            out.played_on = caller.first_sound_after(said_end + GAP_S) is not None
        failed = [e for e in caller.of_type("error") if e.get("turn") == 1]
        if failed:  # the reply was an apology (an LLM timeout on a busy machine): nothing long to talk over
            out.ok, out.error = False, f"the reply failed: {failed[0].get('stage')}: {failed[0].get('message')}"
        return out
    except (TimeoutError, OSError, RuntimeError) as exc:
        out.ok, out.error = False, f"{type(exc).__name__}: {exc}"
        return out
    finally:
        out.heard = [str(e.get("text", "")) for e in caller.of_type("transcript.final")]
        await caller.close()


def _stopped_ms(sounds: list[float], began: float, said_end: float) -> float | None:
    """From `began` to the agent's last sound before it went quiet; None if it never did
    while the caller was speaking."""
    last = began
    for s in sorted(t for t in sounds if t >= began):
        if s - last > GAP_S:
            break
        last = s
    if last > said_end:  # it talked on over the whole interruption
        return None
    return round((last - began) * 1000, 1)


def summary(outcomes: list[Outcome], max_wait_ms: float) -> dict[str, Any]:
    """The table's figures from the cases' outcomes."""
    by = {k: [o for o in outcomes if o.kind == k and o.ok] for k in KINDS}

    def rate(hits: int, of: list[Outcome]) -> dict[str, Any]:
        return {"rate": round(hits / len(of), 3) if of else None, "n": len(of), "hits": hits}

    waits = [o.end_of_turn_ms for o in by["question"] if o.end_of_turn_ms is not None]
    v2v = [o.voice_to_voice_ms for o in by["question"] if o.voice_to_voice_ms is not None]
    reactions = [o.reaction_ms for o in by["interruption"] if o.reaction_ms is not None]
    return {
        "false_end_of_turn": rate(sum(o.answered_early for o in by["paused"]), by["paused"]),
        "late_end_of_turn": rate(sum(w >= max_wait_ms - 60 for w in waits), by["question"]),
        "end_of_turn_wait_ms_p50": percentile(waits, 50),
        "false_interruption": rate(sum(o.interrupted for o in by["backchannel"]), by["backchannel"]),
        "interruption_reaction_ms": {"p50": percentile(reactions, 50), "p95": percentile(reactions, 95),
                                     "missed": sum(not o.interrupted or o.reaction_ms is None
                                                   for o in by["interruption"]),
                                     "answered": sum(o.answered_after for o in by["interruption"]),
                                     "n": len(by["interruption"])},
        "self_interruptions": {"count": sum(o.interrupted for o in by["echo"]), "n": len(by["echo"])},
        "voice_to_voice_ms": {"p50": percentile(v2v, 50), "p95": percentile(v2v, 95), "n": len(v2v)},
        "failed_calls": sum(not o.ok for o in outcomes),
        "max_end_of_turn_ms": max_wait_ms,
    }


def _fmt(value: Any, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.0f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def report_text(report: dict[str, Any]) -> str:
    s = report["summary"]

    def pct(r: dict[str, Any]) -> str:
        return "n/a" if r["rate"] is None else f"{100 * r['rate']:.0f} % ({r['hits']}/{r['n']})"

    react, v2v = s["interruption_reaction_ms"], s["voice_to_voice_ms"]
    rows = [
        ("false end of turn (answered before the caller finished)", pct(s["false_end_of_turn"]), "<= 5 %"),
        (f"late end of turn (waited the maximum, {s['max_end_of_turn_ms']:.0f} ms)", pct(s["late_end_of_turn"]), ""),
        ("end-of-turn wait on complete questions, p50", _fmt(s["end_of_turn_wait_ms_p50"], " ms"), ""),
        ("false interruptions (backchannels, coughs)", pct(s["false_interruption"]), "<= 5 %"),
        ("interruption reaction p50 / p95", f"{_fmt(react['p50'])} / {_fmt(react['p95'])} ms "
         f"(missed {react['missed']}/{react['n']}, answered {react['answered']})", "p95 <= 300 ms"),
        ("self-interruptions from echo", f"{s['self_interruptions']['count']} in {s['self_interruptions']['n']} replies", "0"),
        ("voice-to-voice on complete questions p50 / p95", f"{_fmt(v2v['p50'])} / {_fmt(v2v['p95'])} ms", ""),
    ]
    lines = ["| metric | measured | target |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    if s["failed_calls"]:
        lines.append(f"\n{s['failed_calls']} call(s) did not go as scripted (see --json)")
    return "\n".join(lines)


async def piper_speaker() -> Speak | None:
    """The project's own TTS voice (three speeds) for some of the corpus's cases, if installed."""
    try:
        from voxline.services.tts.piper import PiperTTS
    except ImportError:
        return None
    tts = await asyncio.to_thread(PiperTTS)
    await tts.close()  # its voice is used here, directly, while the corpus is made
    voice, rate = tts.voice, tts.sample_rate

    def speak(text: str, variant: int) -> np.ndarray:
        from piper import SynthesisConfig

        config = SynthesisConfig(volume=0.8, length_scale=(1.0, 0.8, 1.25)[variant % 3])
        pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize(text, config))
        return np.frombuffer(resample_s16(pcm, rate, RATE), dtype=np.int16)

    return speak


async def run_turns(server: str, cases: list[Case], timeout: float = 60.0) -> list[Outcome]:
    outcomes = []
    for i, case in enumerate(cases):
        outcome = await run_case(server, case, timeout)
        outcomes.append(outcome)
        # Each outcome as it comes: a run cut short (a time limit) still leaves its figures.
        print(f"  [{i + 1}/{len(cases)}] {case.kind}: {case.name!r}"
              f"{'' if outcome.ok else '  FAILED: ' + outcome.error}  {json.dumps(asdict(outcome))}",
              file=sys.stderr, flush=True)
    return outcomes


def max_wait_ms(settings: Settings) -> float:
    """The longest end-of-turn wait the server has (a maximum if it has one, else the silence)."""
    return float(getattr(settings, "max_end_of_turn_ms", settings.end_of_turn_silence_ms))


async def turns_main(args: argparse.Namespace) -> int:
    kinds = tuple(k for k in (getattr(args, "kinds", None) or ",".join(KINDS)).split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise RuntimeError(f"--kinds: no such kind {sorted(unknown)}; there are {', '.join(KINDS)}")
    cases = build(args.per_kind, piper=await piper_speaker(), kinds=kinds)
    server, proc = args.server, None
    work = Path(tempfile.mkdtemp(prefix="voxline-turns-"))
    if server is None:
        port = free_port()
        server = f"http://127.0.0.1:{port}"
        # The echo cases are callers without echo cancellation: the server's canceller is on.
        # Replies are capped at REPLY_TOKENS (~10 s of speech): long enough to talk over, short
        # enough that a case takes seconds, not the minute a full 96-token story takes.
        cmd = [sys.executable, "-m", "voxline", "run", "--port", str(port), "--log-format", "text",
               "--session-create-rate-per-min", "10000", "--echo-cancel", "--llm-max-tokens", str(REPLY_TOKENS)]
        proc = ServerProcess(cmd, work / "server.log", server)
        print(f"starting {' '.join(cmd[1:])} (log: {proc.log_path})", file=sys.stderr, flush=True)
        await proc.start()
    try:
        outcomes = await run_turns(server, cases, args.timeout)
    finally:
        if proc is not None:
            proc.stop()
    report = {"summary": summary(outcomes, max_wait_ms(Settings.from_env())),
              "cases": [asdict(o) for o in outcomes], "machine": machine_info(),
              "settings": {"per_kind": args.per_kind, "kinds": list(kinds), "server": server,
                           "env": {k: v for k, v in os.environ.items() if k.startswith("VOXLINE_")}}}
    emit_report(report, args, report_text)
    return 0
