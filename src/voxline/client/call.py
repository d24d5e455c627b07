"""`voxline call`: ask a running server the spoken questions of an audio file; report each turn.

The file is cut into questions at every quiet stretch of `split_silence_s` or more; each is
said in turn, and the next one waits until the reply to the last has been heard out, as a
polite caller would. Every turn is reported: what the agent heard, what it answered, and the
voice-to-voice latency (end of the question's speech sent -> first reply sound received).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from voxline.client.audio import RATE, SPEECH_THRESHOLD, read_wav_mono, write_wav
from voxline.client.caller import Caller
from voxline.client.whip import WhipError

SPLIT_SILENCE_S = 1.0  # a quiet stretch this long between two questions separates them
FRAME = 960  # 20 ms at 48 kHz


@dataclass
class TurnResult:
    turn: int = 0
    transcript: str = ""
    reply_text: str = ""
    voice_to_voice_ms: float | None = None  # heard through a browser-like jitter buffer
    voice_to_voice_unbuffered_ms: float | None = None  # the first reply sound as it came off the socket
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"turn": self.turn, "transcript": self.transcript, "reply_text": self.reply_text,
                "voice_to_voice_ms": self.voice_to_voice_ms,
                "voice_to_voice_unbuffered_ms": self.voice_to_voice_unbuffered_ms,
                "metrics": self.metrics, "error": self.error}


@dataclass
class CallResult:
    session_id: str = ""
    transcript: str = ""  # every turn's, joined
    reply_text: str = ""  # the last reply
    voice_to_voice_ms: float | None = None  # the first turn's, through a jitter buffer
    voice_to_voice_unbuffered_ms: float | None = None  # the first turn's, as received
    turns: list[TurnResult] = field(default_factory=list)
    turn_metrics: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    reply_audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "transcript": self.transcript, "reply_text": self.reply_text,
                "voice_to_voice_ms": self.voice_to_voice_ms,
                "voice_to_voice_unbuffered_ms": self.voice_to_voice_unbuffered_ms,
                "turns": [t.to_json() for t in self.turns],
                "turn_metrics": self.turn_metrics, "reply_audio_s": round(self.reply_audio.size / RATE, 2),
                "error": self.error}


def split_questions(samples: np.ndarray, min_gap_s: float = SPLIT_SILENCE_S,
                    threshold: int = SPEECH_THRESHOLD) -> list[np.ndarray]:
    """`samples` (mono s16, 48 kHz) cut in the middle of every quiet stretch of `min_gap_s` or
    more; pieces with no sound are dropped. 0 keeps the file whole."""
    if samples.size == 0:
        return []
    frames = -(-samples.size // FRAME)
    padded = np.concatenate([samples, np.zeros(frames * FRAME - samples.size, dtype=np.int16)])
    loud = np.abs(padded.reshape(frames, FRAME).astype(np.int32)).max(axis=1) > threshold
    if not loud.any():
        return []
    if min_gap_s <= 0:
        return [samples]
    gap = max(1, int(min_gap_s * RATE / FRAME))
    cuts, quiet_from = [], None
    for i, is_loud in enumerate(loud):
        if not is_loud:
            quiet_from = i if quiet_from is None else quiet_from
            continue
        if quiet_from is not None and i - quiet_from >= gap and loud[:quiet_from].any():
            cuts.append((quiet_from + i) // 2 * FRAME)
        quiet_from = None
    edges = [0, *cuts, samples.size]
    return [samples[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def last_turn(events: list[dict[str, Any]]) -> int:
    """The highest turn number the events mention (0: none yet)."""
    return max((int(e.get("turn") or 0) for e in events if isinstance(e.get("turn"), int)), default=0)


async def call(server: str, question: np.ndarray, token: str | None = None, timeout: float = 60.0,
               lead_in_s: float = 0.4, split_silence_s: float = SPLIT_SILENCE_S) -> CallResult:
    """Connect, say each question in `question` (mono s16 48 kHz) and hear its reply out, hang up."""
    result = CallResult()
    caller = Caller(server, token)
    asked: list[tuple[int, float]] = []  # (first turn it may be answered in, when its speech ended)
    try:
        await caller.connect()
        result.session_id = caller.session_id
        await caller.client.set_listening(True)
        await asyncio.sleep(lead_in_s)
        for piece in split_questions(question, split_silence_s):
            after = last_turn(caller.events) + 1
            speech_end = await caller.say(piece)
            asked.append((after, speech_end))
            if not await caller.wait_reply_done(after=after, timeout=timeout):
                result.error = f"no complete reply within {timeout:.0f} s"
                break
        result.reply_audio = caller.recorder.reply_audio()
    except (TimeoutError, WhipError, aiohttp.ClientError, OSError) as exc:
        result.error = str(exc) or type(exc).__name__
    finally:
        await caller.close()
    result.events = caller.events
    result.turns = turn_results(caller, asked)
    result.transcript = " ".join(t.transcript for t in result.turns if t.transcript)
    result.reply_text = next((t.reply_text for t in reversed(result.turns) if t.reply_text), "")
    result.voice_to_voice_ms = result.turns[0].voice_to_voice_ms if result.turns else None
    result.voice_to_voice_unbuffered_ms = result.turns[0].voice_to_voice_unbuffered_ms if result.turns else None
    result.turn_metrics = [{"turn": e.get("turn"), **e.get("metrics", {})} for e in caller.of_type("turn.metrics")]
    errors = caller.of_type("error")
    if errors and result.error is None:
        result.error = errors[-1].get("message")
    return result


def turn_results(caller: Caller, asked: list[tuple[int, float]]) -> list[TurnResult]:
    """One result per question: the server turns from its first one up to the next question's
    (a question with a long pause inside can take two), their words and the reply heard."""
    out = []
    for i, (first, speech_end) in enumerate(asked):
        last = asked[i + 1][0] - 1 if i + 1 < len(asked) else None

        def mine(e: dict[str, Any], first: int = first, last: int | None = last) -> bool:
            turn = e.get("turn")
            return isinstance(turn, int) and turn >= first and (last is None or turn <= last)

        texts: list[str] = []  # a turn that continues the last one repeats its words
        for e in caller.of_type("transcript.final"):
            if mine(e) and str(e.get("text", "")).strip():
                if e.get("continued") and texts:
                    texts[-1] = str(e["text"])
                else:
                    texts.append(str(e["text"]))
        finals = [e for e in caller.of_type("agent.text") if e.get("final") and mine(e)]
        metrics = [e.get("metrics", {}) for e in caller.of_type("turn.metrics") if mine(e)]
        errors = [e for e in caller.of_type("error") if mine(e)]
        first_sound = caller.recorder.first_sound_after(speech_end)
        turn = TurnResult(turn=int(finals[-1]["turn"]) if finals else first,
                          transcript=" ".join(texts),
                          reply_text=finals[-1].get("text", "") if finals else "",
                          metrics=metrics[-1] if metrics else {},
                          error=errors[-1].get("message") if errors else None)
        if first_sound is not None and (i + 1 >= len(asked) or first_sound < asked[i + 1][1]):
            turn.voice_to_voice_unbuffered_ms = round((first_sound - speech_end) * 1000, 1)
            played = caller.recorder.played_first_sound_after(speech_end)
            if played is not None:
                turn.voice_to_voice_ms = round((played - speech_end) * 1000, 1)
        out.append(turn)
    return out


async def call_main(args: argparse.Namespace) -> int:
    try:
        question = read_wav_mono(args.wav)
    except (OSError, ValueError, EOFError) as exc:
        print(f"voxline call: cannot read {args.wav}: {exc}", file=sys.stderr)
        return 2
    result = await call(args.server, question, token=args.token, timeout=args.timeout,
                        split_silence_s=getattr(args, "split_silence", SPLIT_SILENCE_S))
    if args.out and result.reply_audio.size:
        write_wav(Path(args.out), result.reply_audio)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(f"session:        {result.session_id}")
        for t in result.turns:
            v2v = f"{t.voice_to_voice_ms:.0f} ms" if t.voice_to_voice_ms is not None else "n/a"
            print(f"turn {t.turn}")
            print(f"  you said:       {t.transcript}")
            print(f"  agent replied:  {t.reply_text}")
            raw = f"{t.voice_to_voice_unbuffered_ms:.0f} ms" if t.voice_to_voice_unbuffered_ms is not None else "n/a"
            print(f"  voice-to-voice: {v2v} (through a jitter buffer; {raw} as received)")
        if args.out:
            print(f"reply audio:    {args.out} ({result.reply_audio.size / RATE:.1f} s)")
        if result.error:
            print(f"error:          {result.error}")
    return 0 if result.error is None and result.turns and all(t.reply_text for t in result.turns) else 1
