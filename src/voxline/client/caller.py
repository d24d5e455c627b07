"""A scripted caller: connect by WHIP, say things, follow the events, record the replies.

`voxline call`, `voxline bench` and the tests all drive the server through this class, so the
latency they report is measured one way: from the end of the speech in what was sent to the
first non-silent reply sample received.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import numpy as np

from voxline.agent.conversation import has_words
from voxline.client.audio import Recorder, WavSource, speech_end_sample
from voxline.client.pacer import pacer
from voxline.client.whip import WhipClient
from voxline.rtc.sdp import first_audio_codec, opus_fmtp
from voxline.rtc.send import DirectSender

REPLY_DONE_QUIET_S = 0.6  # after the reply's audio ends, wait this long for more


class Caller:
    def __init__(self, server: str, token: str | None = None) -> None:
        self.token = token
        self.client = WhipClient(server, token)
        self.source = WavSource()
        self.recorder = Recorder()
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()  # set on every event
        self._tasks: list[asyncio.Task[Any]] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._said_end: float | None = None

    @property
    def session_id(self) -> str:
        return self.client.session.session_id if self.client.session else ""

    @property
    def session_headers(self) -> dict[str, str]:
        """What opens this caller's session routes (its secret), for reading its state."""
        return self.client.session.headers if self.client.session else {}

    async def __aenter__(self) -> Caller:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout: float = 10.0) -> None:
        session = await self.client.connect(self.source, on_audio=self.recorder.on_audio)
        answer = self.client.pc.remoteDescription.sdp
        self.source.opus = first_audio_codec(answer) == "opus"
        self.source.use_fmtp(opus_fmtp(answer))
        # Before the connection is up (and aiortc's sender starts), hand the packets to the pacer.
        direct = DirectSender.for_connection(self.client.pc) if self.source.opus else None
        if direct is not None:
            pacer().add(self.source, direct)
        ws_url = self.client.url(f"/sessions/{session.session_id}/events").replace("http", "ws", 1)
        ws = self._ws = await self.client.http.ws_connect(ws_url, headers=session.headers)
        self._tasks.append(asyncio.create_task(self._collect(ws)))
        deadline = time.time() + timeout
        while self.client.pc.connectionState != "connected" or self.client.remote_track is None:
            if time.time() > deadline:
                raise TimeoutError(f"WebRTC connection not established in {timeout:.0f} s")
            await asyncio.sleep(0.02)
        if not self.client.inline_audio:
            self._tasks.append(asyncio.create_task(self.recorder.run(self.client.remote_track)))

    async def say(self, samples: np.ndarray) -> float:
        """Start sending `samples` (mono s16 48 kHz); returns when the speech will have ended."""
        self.source.play(samples)
        while self.source.played_at is None:  # noqa: ASYNC110 - set by the media clock, which has no event
            await asyncio.sleep(0.005)
        end = self.source.time_of_sample(speech_end_sample(samples))
        assert end is not None
        self._said_end = end
        return end

    async def wait_for(self, predicate: Any, timeout: float) -> dict[str, Any] | None:
        """The first event (old or new) for which `predicate(event)` is true, or None on timeout."""
        deadline = time.time() + timeout
        seen = 0
        while True:
            for obj in self.events[seen:]:
                if predicate(obj):
                    return obj
            seen = len(self.events)
            remaining = deadline - time.time()
            if remaining <= 0:
                return None
            self.changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self.changed.wait()
            except TimeoutError:
                return None

    async def wait_reply_done(self, after: int, timeout: float) -> bool:
        """Wait until turn `after` or later has been answered and its audio has ended."""
        def answered(e: dict[str, Any]) -> bool:
            if e.get("turn", 0) < after:
                return False
            # A reply, a failure, or a turn the agent heard no words in (noise): nothing more comes.
            return bool((e.get("type") == "agent.text" and e.get("final")) or e.get("type") == "error" or (
                e.get("type") == "transcript.final" and not has_words(str(e.get("text", "")))))

        if await self.wait_for(answered, timeout) is None:
            return False
        # Then wait for the `listening` state of that turn and REPLY_DONE_QUIET_S without sound,
        # sleeping until one of them can have changed (an event, or the quiet time running out)
        # rather than polling: a benchmark runs a hundred callers in one process.
        deadline = time.time() + timeout
        seen, listening = 0, False
        while True:
            for e in self.events[seen:]:
                listening = listening or (e.get("type") == "state" and e.get("state") == "listening"
                                          and e.get("turn", 0) >= after)
            seen = len(self.events)
            now = time.time()
            last = self.recorder.last_sound
            quiet_at = now if last is None else last + REPLY_DONE_QUIET_S
            if listening and now >= quiet_at:
                return True
            wait = min(deadline, quiet_at if listening else deadline) - now
            if now >= deadline:
                return False
            self.changed.clear()
            try:
                async with asyncio.timeout(max(0.01, wait)):
                    await self.changed.wait()
            except TimeoutError:
                pass

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == type_]

    def first_sound_after(self, t: float) -> float | None:
        return self.recorder.first_sound_after(t)

    async def close(self) -> None:
        pacer().remove(self.source)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        await self.client.close()

    async def _collect(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            self.events.append(json.loads(msg.data))
            self.changed.set()
