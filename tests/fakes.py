"""Fakes at the model boundary and a virtual clock: the agent's logic tested in milliseconds.

Everything else is real (the Conversation, TurnDetector, ReplyPipeline, SessionAgent and the
memory bus). The fakes follow the protocols of `voxline.services.base` and the VAD batcher:
scripted outputs, delays on the virtual clock, and failures on request. The fake VAD hears
speech wherever the audio is loud, so a test writes a turn as loud and silent milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from voxline.bus.base import Message
from voxline.bus.codec import AudioKind, AudioMessage, decode_json
from voxline.bus.memory import MemoryBus
from voxline.bus.topics import Topic
from voxline.services.base import ChatMessage

RATE = 16_000
WINDOW = 512  # samples in one VAD window (32 ms)
LOUD = 8_000


async def settle(rounds: int = 30) -> None:
    """Let every task that can run, run (a few loop turns), without real time passing."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class VirtualClock:
    """Wall-clock time that moves only when a test says: `time()` for stamps, `sleep()` for delays."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, waking each sleeper at its due time, in order."""
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            if not future.done():
                future.set_result(None)
            await settle()
        self.now = target
        await settle()


def speech(ms: int) -> bytes:
    """`ms` of audio the fake VAD hears as speech."""
    return np.full(int(RATE * ms / 1000), LOUD, dtype=np.int16).tobytes()


def silence(ms: int) -> bytes:
    return bytes(int(RATE * ms / 1000) * 2)


# -- models ------------------------------------------------------------------------------------

@dataclass
class FakeSTT:
    """Answers each call with the next scripted text (the last one repeats).

    An item may be an exception (raised) or None (the call never returns: a hung back-end).
    """

    clock: VirtualClock
    texts: list[str | BaseException | None] = field(default_factory=lambda: ["Hello."])
    delay_s: float = 0.1
    name: str = "fake-stt"
    calls: list[bytes] = field(default_factory=list)

    async def transcribe(self, pcm: bytes, sample_rate: int = RATE) -> str:
        item = self.texts[min(len(self.calls), len(self.texts) - 1)]
        self.calls.append(pcm)
        await self.clock.sleep(self.delay_s)
        if item is None:
            await asyncio.Event().wait()
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, str)
        return item

    async def close(self) -> None:
        return None


@dataclass
class FakeLLM:
    """Streams `reply` (or `reply(messages)`) word by word, `token_s` apart; `fail` raises mid-way."""

    clock: VirtualClock
    reply: str | Callable[[list[ChatMessage]], str] = "It is noon. Anything else?"
    first_token_s: float = 0.05
    token_s: float = 0.01
    fail: BaseException | None = None
    name: str = "fake-llm"
    calls: list[list[ChatMessage]] = field(default_factory=list)

    async def stream(self, messages: list[ChatMessage], max_tokens: int | None = None) -> AsyncIterator[str]:
        self.calls.append(list(messages))
        text = self.reply(messages) if callable(self.reply) else self.reply
        await self.clock.sleep(self.first_token_s)
        for i, word in enumerate(text.split(" ")):
            if self.fail is not None and i == 1:
                raise self.fail
            yield word if i == 0 else " " + word
            await self.clock.sleep(self.token_s)

    async def close(self) -> None:
        return None


@dataclass
class FakeTTS:
    """`ms_per_char` of loud audio per character of each sentence, after `delay_s`."""

    clock: VirtualClock
    delay_s: float = 0.05
    ms_per_char: int = 20
    fail: BaseException | None = None
    sample_rate: int = RATE
    name: str = "fake-tts"
    calls: list[str] = field(default_factory=list)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.calls.append(text)
        await self.clock.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        yield speech(self.ms_per_char * len(text))

    async def close(self) -> None:
        return None


class FakeVadStream:
    def __init__(self) -> None:
        self.rest = b""

    def reset(self) -> None:
        self.rest = b""


class FakeVad:
    """The VAD model and its batcher in one: a window is speech (0.9) when it is loud."""

    def __init__(self) -> None:
        self.calls = 0

    def stream(self) -> FakeVadStream:
        return FakeVadStream()

    async def process(self, stream: FakeVadStream, pcm: bytes) -> list[tuple[bytes, float]]:
        self.calls += 1
        data = stream.rest + pcm
        n = len(data) // (WINDOW * 2) * WINDOW * 2
        stream.rest = data[n:]
        out = []
        for i in range(0, n, WINDOW * 2):
            raw = data[i:i + WINDOW * 2]
            loud = np.abs(np.frombuffer(raw, dtype=np.int16).astype(np.int32)).mean() > LOUD / 2
            out.append((raw, 0.9 if loud else 0.0))
        return out


@dataclass
class FakeTurnModel:
    """The end-of-turn model: every pause scores `score` after `delay_s`."""

    clock: VirtualClock
    score_value: float | None = 0.9
    delay_s: float = 0.04
    calls: int = 0

    async def score(self, pcm: bytes) -> float | None:
        self.calls += 1
        await self.clock.sleep(self.delay_s)
        return self.score_value


@dataclass
class FakeModels:
    """What `SessionAgent` and `ReplyPipeline` use of `voxline.agent.models.Models`."""

    stt: FakeSTT
    llm: FakeLLM
    tts: FakeTTS
    vad: FakeVad = field(default_factory=FakeVad)
    turn_model: FakeTurnModel | None = None
    first_piece_words: int = 4

    @property
    def vad_batch(self) -> FakeVad:
        return self.vad


def fake_models(clock: VirtualClock, **kwargs: object) -> FakeModels:
    return FakeModels(FakeSTT(clock), FakeLLM(clock), FakeTTS(clock), **kwargs)  # type: ignore[arg-type]


# -- the bus, as the media server would read it ---------------------------------------------------

class BusTap:
    """Everything the agent published, read straight off a real memory bus subscription."""

    def __init__(self) -> None:
        self.bus = MemoryBus()
        self.audio: list[AudioMessage] = []
        self.events: list[dict[str, object]] = []
        self.ended: list[int] = []  # turns whose END was sent, in order (kept when `audio` is cleared)
        self._sub: object | None = None

    async def start(self) -> BusTap:
        self._sub = await self.bus.subscribe([Topic.AUDIO_OUT, Topic.EVENTS])
        return self

    def drain(self) -> None:
        queue = self._sub.queue  # type: ignore[attr-defined]
        while not queue.empty():
            msg = queue.get_nowait()
            assert isinstance(msg, Message)
            if msg.topic is Topic.AUDIO_OUT:
                self.audio.append(AudioMessage.decode(msg.value))
                if self.audio[-1].kind is AudioKind.END:
                    self.ended.append(self.audio[-1].turn)
            else:
                self.events.append(decode_json(msg.value))

    def kinds(self) -> list[AudioKind]:
        """The audio.out message kinds in order, runs of AUDIO collapsed to one."""
        self.drain()
        out: list[AudioKind] = []
        for m in self.audio:
            if not (out and out[-1] is AudioKind.AUDIO and m.kind is AudioKind.AUDIO):
                out.append(m.kind)
        return out

    def of(self, type_: str) -> list[dict[str, object]]:
        self.drain()
        return [e for e in self.events if e.get("type") == type_]

    def logs(self) -> list[str]:
        return [str(e.get("message")) for e in self.of("log")]
