"""`voxline call`: ask a running server a spoken question and report what came back."""

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

from voxline.client.audio import RATE, read_wav_mono, write_wav
from voxline.client.caller import Caller
from voxline.client.whip import WhipError


@dataclass
class CallResult:
    session_id: str = ""
    transcript: str = ""
    reply_text: str = ""
    voice_to_voice_ms: float | None = None
    turn_metrics: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    reply_audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "transcript": self.transcript, "reply_text": self.reply_text,
                "voice_to_voice_ms": self.voice_to_voice_ms, "turn_metrics": self.turn_metrics,
                "reply_audio_s": round(self.reply_audio.size / RATE, 2), "error": self.error}


async def call(server: str, question: np.ndarray, token: str | None = None, timeout: float = 60.0,
               lead_in_s: float = 0.4) -> CallResult:
    """Connect, say `question` (mono s16 48 kHz), record the reply until it ends, hang up."""
    result = CallResult()
    caller = Caller(server, token)
    try:
        await caller.connect()
        result.session_id = caller.session_id
        await caller.client.set_listening(True)
        await asyncio.sleep(lead_in_s)
        speech_end = await caller.say(question)
        if not await caller.wait_reply_done(after=1, timeout=timeout):
            result.error = f"no complete reply within {timeout:.0f} s"
        first = caller.recorder.first_sound_after(speech_end)
        if first is not None:
            result.voice_to_voice_ms = round((first - speech_end) * 1000, 1)
        result.reply_audio = caller.recorder.reply_audio()
    except (TimeoutError, WhipError, aiohttp.ClientError, OSError) as exc:
        result.error = str(exc) or type(exc).__name__
    finally:
        await caller.close()
    result.events = caller.events
    result.transcript = " ".join(e["text"] for e in caller.of_type("transcript.final") if e.get("text"))
    finals = [e for e in caller.of_type("agent.text") if e.get("final")]
    result.reply_text = finals[-1]["text"] if finals else ""
    result.turn_metrics = [{"turn": e.get("turn"), **e.get("metrics", {})} for e in caller.of_type("turn.metrics")]
    errors = caller.of_type("error")
    if errors and result.error is None:
        result.error = errors[-1].get("message")
    return result


async def call_main(args: argparse.Namespace) -> int:
    try:
        question = read_wav_mono(args.wav)
    except (OSError, ValueError, EOFError) as exc:
        print(f"voxline call: cannot read {args.wav}: {exc}", file=sys.stderr)
        return 2
    result = await call(args.server, question, token=args.token, timeout=args.timeout)
    if args.out and result.reply_audio.size:
        write_wav(Path(args.out), result.reply_audio)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(f"session:        {result.session_id}")
        print(f"you said:       {result.transcript}")
        print(f"agent replied:  {result.reply_text}")
        v2v = f"{result.voice_to_voice_ms:.0f} ms" if result.voice_to_voice_ms is not None else "n/a"
        print(f"voice-to-voice: {v2v}")
        if args.out:
            print(f"reply audio:    {args.out} ({result.reply_audio.size / RATE:.1f} s)")
        if result.error:
            print(f"error:          {result.error}")
    return 0 if result.error is None and result.reply_text else 1
