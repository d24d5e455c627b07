"""`voxline call`: ask a running server a spoken question and report what came back."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from voxline.client.audio import RATE, Recorder, WavSource, read_wav_mono, speech_end_sample, write_wav
from voxline.client.whip import WhipClient, WhipError

REPLY_DONE_QUIET_S = 0.6  # after the reply's audio ends, wait this long for more


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
    client = WhipClient(server, token)
    source = WavSource()
    recorder = Recorder()
    tasks: list[asyncio.Task[Any]] = []
    try:
        session = await client.connect(source)
        result.session_id = session.session_id
        ws_url = client.url(f"/sessions/{session.session_id}/events").replace("http", "ws", 1)
        ws = await client.http.ws_connect(ws_url + (f"?token={token}" if token else ""))
        reply_done = asyncio.Event()
        tasks.append(asyncio.create_task(_collect(ws, result, reply_done)))
        await client.set_listening(True)
        await _wait_connected(client, timeout=10)
        tasks.append(asyncio.create_task(recorder.run(client.remote_track)))  # type: ignore[arg-type]
        await asyncio.sleep(lead_in_s)
        source.play(question)
        speech_end = speech_end_sample(question)
        deadline = time.time() + timeout
        while time.time() < deadline:
            await asyncio.sleep(0.05)
            quiet = recorder.last_sound is not None and time.time() - recorder.last_sound > REPLY_DONE_QUIET_S
            if reply_done.is_set() and (quiet or recorder.first_sound is None and result.error):
                break
        else:
            result.error = result.error or f"no complete reply within {timeout:.0f} s"
        end_time = source.time_of_sample(speech_end)
        if recorder.first_sound is not None and end_time is not None:
            result.voice_to_voice_ms = round((recorder.first_sound - end_time) * 1000, 1)
        result.reply_audio = recorder.reply_audio()
    except (WhipError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        result.error = str(exc) or type(exc).__name__
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
    return result


async def _wait_connected(client: WhipClient, timeout: float) -> None:
    deadline = time.time() + timeout
    while client.pc.connectionState != "connected" or client.remote_track is None:
        if time.time() > deadline:
            raise asyncio.TimeoutError(f"WebRTC connection not established in {timeout:.0f} s")
        await asyncio.sleep(0.02)


async def _collect(ws: aiohttp.ClientWebSocketResponse, result: CallResult, reply_done: asyncio.Event) -> None:
    finals: list[str] = []
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        obj = json.loads(msg.data)
        result.events.append(obj)
        kind = obj.get("type")
        if kind == "transcript.final" and obj.get("text"):
            finals.append(obj["text"])
            result.transcript = " ".join(finals)
        elif kind == "agent.text" and obj.get("final"):
            result.reply_text = obj.get("text", "")
        elif kind == "turn.metrics":
            result.turn_metrics.append({"turn": obj.get("turn"), **obj.get("metrics", {})})
        elif kind == "state" and obj.get("state") == "listening" and (result.reply_text or result.error):
            reply_done.set()
        elif kind == "error":
            result.error = obj.get("message")


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
