"""One session's media-server side, played by a test: a SessionAgent on fake models, a virtual
clock and a real memory bus, fed the caller's audio 20 ms at a time."""

from __future__ import annotations

from typing import Any

from fakes import BusTap, FakeModels, VirtualClock, silence
from voxline.agent.conversation import Conversation
from voxline.agent.session_agent import SessionAgent
from voxline.agent.turns import TurnConfig, TurnDetector
from voxline.bus.codec import AudioKind, AudioMessage
from voxline.bus.messages import PlaybackDone, SetListening

SID = "session_1760000000000_abcdefghijklmnop"
CHUNK_MS = 20


class Call:
    """The media server's side of one session, played by the test."""

    def __init__(self, clock: VirtualClock, models: FakeModels, tap: BusTap, greeting: str = "",
                 speculate: bool = True, **turns: Any) -> None:
        self.clock, self.models, self.tap = clock, models, tap
        self.conv = Conversation("You are a test agent.", overlap_timeout_ms=2000)
        config = TurnConfig(**{"min_end_silence_ms": 200, "end_silence_ms": 500, "max_end_silence_ms": 2500,
                               "sustained_ms": 600, **turns})
        self.agent = SessionAgent(SID, models, tap.bus, self.conv, TurnDetector(config), timeout_s=5.0,  # type: ignore[arg-type]
                                  speculate=speculate, greeting=greeting, clock=clock.time)
        self.seq = 0
        self.done: set[int] = set()

    async def listen(self) -> None:
        await self.agent.on_control(SetListening(session_id=self.agent.session_id, listening=True))

    async def say(self, pcm: bytes) -> None:
        """Send `pcm` as the caller's 20 ms chunks, in (virtual) real time."""
        step = 16 * CHUNK_MS * 2
        for i in range(0, len(pcm), step):
            self.seq += 1
            msg = AudioMessage(SID, self.seq, pcm[i:i + step], 16_000, self.clock.now, AudioKind.AUDIO)
            await self.agent.on_audio([msg])
            await self.clock.advance(CHUNK_MS / 1000)

    async def quiet(self, ms: int) -> None:
        await self.say(silence(ms))

    async def finish_playback(self) -> None:
        """Report each reply the agent ended (END sent) as played out, as the media server does."""
        self.tap.drain()
        for turn in self.tap.ended:
            if turn not in self.done:
                self.done.add(turn)
                await self.agent.on_control(PlaybackDone(session_id=self.agent.session_id, turn=turn))

    def reply_audio_ms(self) -> float:
        self.tap.drain()
        return sum(len(m.pcm) for m in self.tap.audio if m.kind is AudioKind.AUDIO) / 2 / 16
