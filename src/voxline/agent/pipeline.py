"""One turn's model work, STT -> LLM -> TTS, running ahead of the conversation into a queue.

A pipeline can start *speculatively* as soon as the caller pauses, before the end of the turn
is certain: its outputs (transcript, text deltas, audio) wait in its queue, unseen. If the
caller stays silent, the turn commits and the waiting audio goes out at once; if the caller
speaks again, the pipeline is cancelled and nothing it made is ever heard or recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from voxline.agent.chunking import SentenceChunker
from voxline.agent.conversation import has_words
from voxline.agent.models import Models
from voxline.services.base import ChatMessage

T = TypeVar("T")
OUT_CHUNK_S = 0.2  # reply audio goes on the bus in pieces of at most this length


@dataclass(frozen=True)
class Transcript:
    text: str


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class ReplyText:
    """The LLM finished: the whole reply text."""

    text: str


@dataclass(frozen=True)
class Audio:
    pcm: bytes
    sample_rate: int


@dataclass(frozen=True)
class Failed:
    stage: str
    error: BaseException


Output = Transcript | Delta | ReplyText | Audio | Failed


@dataclass
class StageTimes:
    """Wall-clock marks of one turn (the agent's clock), turned into the `turn.metrics` event."""

    speech_end: float = 0.0
    decided: float = 0.0
    stt_start: float = 0.0
    stt_end: float = 0.0
    llm_start: float = 0.0
    llm_first_token: float = 0.0
    first_sentence: float = 0.0
    first_audio_ready: float = 0.0
    first_audio_sent: float = 0.0
    speculative: bool = False
    end_of_turn_wait_ms: int | None = None  # the silence the end-of-turn decision asked for
    end_of_turn_reason: str | None = None
    end_of_turn_score: float | None = None  # the end-of-turn model's score, if it ran

    def metrics(self) -> dict[str, Any]:
        def ms(a: float, b: float) -> float | None:
            return round((b - a) * 1000, 1) if a and b else None

        return {
            "end_of_turn_ms": ms(self.speech_end, self.decided),
            "stt_ms": ms(self.stt_start, self.stt_end),
            "llm_first_token_ms": ms(self.llm_start, self.llm_first_token),
            "first_sentence_ms": ms(self.llm_start, self.first_sentence),
            "tts_first_audio_ms": ms(self.first_sentence, self.first_audio_ready),
            "server_voice_to_voice_ms": ms(self.speech_end, self.first_audio_sent),
            "speculative": self.speculative,
            "end_of_turn_wait_ms": self.end_of_turn_wait_ms,
            "end_of_turn_reason": self.end_of_turn_reason,
            "end_of_turn_score": None if self.end_of_turn_score is None else round(self.end_of_turn_score, 3),
        }


class ReplyPipeline:
    def __init__(self, models: Models, pcm: bytes, history: list[ChatMessage], timeout_s: float,
                 max_tokens: int | None = None, text: str | None = None,
                 on_transcript: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.models = models
        self.on_transcript = on_transcript  # told the words as soon as they exist (an end-of-turn cue); "" if none
        self.clock = clock
        self.pcm = pcm
        self.history = history  # system prompt + earlier turns, without this turn's words
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.known_text = text  # skip STT when the transcript is already known
        self.times = StageTimes()
        self.messages: list[ChatMessage] = []
        self.reply: list[str] = []
        self._queue: asyncio.Queue[Output | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> ReplyPipeline:
        self._task = asyncio.create_task(self._run(), name="reply-pipeline")
        return self

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def outputs(self) -> AsyncIterator[Output]:
        while (item := await self._queue.get()) is not None:
            yield item

    async def _run(self) -> None:
        stage = "stt"
        try:
            self.times.stt_start = self.clock()
            if self.known_text is None:
                text = (await asyncio.wait_for(self.models.stt.transcribe(self.pcm), self.timeout_s)).strip()
            else:
                text = self.known_text
            self.times.stt_end = self.clock()
            self._queue.put_nowait(Transcript(text))
            if self.on_transcript is not None:
                self.on_transcript(text)
            if not has_words(text):
                return
            self.messages = [*self.history, {"role": "user", "content": text}]
            sentences: asyncio.Queue[str | None] = asyncio.Queue()
            producer = asyncio.create_task(self._generate(sentences))
            gate = getattr(self.models.llm, "gate", None)  # an embedded LLM sharing our cores
            try:
                stage = "tts"
                while (sentence := await sentences.get()) is not None:
                    if gate is not None and not self.times.first_audio_ready:
                        gate.clear()  # the first audio first; the rest of the reply can wait
                    try:
                        await self._speak(sentence)
                    finally:
                        if gate is not None:
                            gate.set()
                stage = "llm"
                await producer  # re-raises an LLM failure
            finally:
                producer.cancel()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a back-end fault, reported to the turn
            if stage == "stt" and self.on_transcript is not None:
                self.on_transcript("")  # no words will come: the end of the turn need not wait for them
            self._queue.put_nowait(Failed(stage, exc))
        finally:
            self._queue.put_nowait(None)

    async def _generate(self, out: asyncio.Queue[str | None]) -> None:
        chunker = SentenceChunker(first_piece_max_words=self.models.first_piece_words)
        self.times.llm_start = self.clock()
        try:
            async for delta in with_timeout(self.models.llm.stream(self.messages, self.max_tokens), self.timeout_s):
                self.times.llm_first_token = self.times.llm_first_token or self.clock()
                self.reply.append(delta)
                self._queue.put_nowait(Delta(delta))
                for sentence in chunker.push(delta):
                    self.times.first_sentence = self.times.first_sentence or self.clock()
                    out.put_nowait(sentence)
            for sentence in chunker.flush():
                self.times.first_sentence = self.times.first_sentence or self.clock()
                out.put_nowait(sentence)
            self._queue.put_nowait(ReplyText("".join(self.reply).strip()))
        finally:
            out.put_nowait(None)

    async def _speak(self, sentence: str) -> None:
        tts = self.models.tts
        step = int(OUT_CHUNK_S * tts.sample_rate) * 2
        async for pcm in with_timeout(tts.synthesize(sentence), self.timeout_s):
            if not self.times.first_audio_ready:
                pcm = trim_leading_silence(pcm, tts.sample_rate)  # TTS voices start with ~50 ms of it
                self.times.first_audio_ready = self.clock()
                gate = getattr(self.models.llm, "gate", None)
                if gate is not None:
                    gate.set()
            for i in range(0, len(pcm), step):
                self._queue.put_nowait(Audio(pcm[i:i + step], tts.sample_rate))


def trim_leading_silence(pcm: bytes, sample_rate: int, threshold: int = 300, keep_s: float = 0.01) -> bytes:
    """`pcm` (s16) from just before its first sample louder than `threshold` (-40 dBFS)."""
    samples = np.frombuffer(pcm, dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    if not loud.size:
        return pcm
    start = max(0, int(loud[0]) - int(keep_s * sample_rate))
    return pcm[start * 2:]


async def with_timeout(stream: AsyncIterator[T], timeout_s: float) -> AsyncIterator[T]:
    """Iterate `stream`, failing if any single item takes longer than `timeout_s` (a hung back-end)."""
    iterator = stream.__aiter__()
    try:
        while True:
            try:
                item = await asyncio.wait_for(iterator.__anext__(), timeout_s)
            except StopAsyncIteration:
                return
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
