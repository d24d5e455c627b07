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
from typing import TypeVar

import numpy as np

from voxline.agent.conversation import has_words
from voxline.agent.models import Models
from voxline.agent.stage_times import StageTimes
from voxline.agent.tools.registry import ToolRegistry, ToolResult
from voxline.services.base import ChatMessage, ToolCall, ToolLLM
from voxline.services.threads import deadline as model_deadline
from voxline.text.chunking import SentenceChunker

T = TypeVar("T")
OUT_CHUNK_S = 0.2  # reply audio goes on the bus in pieces of at most this length
GOODBYE = "Goodbye."  # said when the model hangs up without a word


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
class ToolUsed:
    """A tool call finished (or failed): for the pipeline log and the turn's record."""

    result: ToolResult


@dataclass(frozen=True)
class Failed:
    stage: str
    error: BaseException


Output = Transcript | Delta | ReplyText | Audio | ToolUsed | Failed


class ReplyPipeline:
    def __init__(self, models: Models, pcm: bytes, history: list[ChatMessage], timeout_s: float,
                 max_tokens: int | None = None, text: str | None = None,
                 on_transcript: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.models = models
        self.on_transcript = on_transcript  # told the words as soon as they exist (an end-of-turn cue); "" if none
        self.clock = clock
        self._audio_s = 0.0  # reply audio made so far, in seconds
        self.pcm = pcm
        self.history = history  # system prompt + earlier turns, without this turn's words
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.known_text = text  # skip STT when the transcript is already known
        self.times = StageTimes()
        self.messages: list[ChatMessage] = []
        self.reply: list[str] = []
        self._said = 0  # deltas of `reply` already sent back to the model with a tool call
        self._queue: asyncio.Queue[Output | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Tools run only for a committed turn: a speculative reply stops at its first tool
        # call until the end of the turn commits it (or it is dropped, having run nothing).
        self.committed = asyncio.Event()
        self.ends_call = False  # a tool asked to hang up once this reply has been heard

    def start(self) -> ReplyPipeline:
        self._task = asyncio.create_task(self._run(), name="reply-pipeline")
        return self

    def commit(self) -> None:
        self.committed.set()

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
                async with asyncio.timeout(self.timeout_s):  # not wait_for: see `with_timeout`
                    heard = await self.models.stt.transcribe(self.pcm)
                text = heard.strip()
            else:
                text = heard = self.known_text
            self.times.stt_end = self.clock()
            self._queue.put_nowait(Transcript(text))
            if self.on_transcript is not None:
                self.on_transcript(heard)  # a `Heard` keeps the STT's other readings: a cue to the end of the turn
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
                await asyncio.gather(producer, return_exceptions=True)  # its tool calls end before the reply does
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
        messages = list(self.messages)
        try:
            tools = self._tools()
            for round_ in range(tools.max_rounds + 1 if tools else 1):
                offer = tools if tools and round_ < tools.max_rounds else None  # the last round answers
                calls: list[ToolCall] = []
                async for item in with_timeout(self._llm(messages, offer), self.timeout_s):
                    if isinstance(item, ToolCall):
                        calls.append(item)
                        continue
                    self.times.llm_first_token = self.times.llm_first_token or self.clock()
                    self.reply.append(item)
                    self._queue.put_nowait(Delta(item))
                    for sentence in chunker.push(item):
                        self.times.first_sentence = self.times.first_sentence or self.clock()
                        out.put_nowait(sentence)
                if not calls or offer is None:
                    break
                for sentence in chunker.flush():  # what was said before the call is said now
                    self.times.first_sentence = self.times.first_sentence or self.clock()
                    out.put_nowait(sentence)
                messages += await self._call_tools(offer, calls, out)
            if self.ends_call and not "".join(self.reply).strip():
                self.reply.append(GOODBYE)  # the caller hears something before the line goes dead
                self._queue.put_nowait(Delta(GOODBYE))
                chunker.push(GOODBYE)
            for sentence in chunker.flush():
                self.times.first_sentence = self.times.first_sentence or self.clock()
                out.put_nowait(sentence)
            self._queue.put_nowait(ReplyText("".join(self.reply).strip()))
        finally:
            out.put_nowait(None)

    def _tools(self) -> ToolRegistry | None:
        tools: ToolRegistry | None = getattr(self.models, "tools", None)
        llm = self.models.llm
        if tools is None or not len(tools) or not isinstance(llm, ToolLLM) or not llm.supports_tools:
            return None
        return tools

    def _llm(self, messages: list[ChatMessage], tools: ToolRegistry | None) -> AsyncIterator[str | ToolCall]:
        if tools is None:
            return self.models.llm.stream(messages, self.max_tokens)
        assert isinstance(self.models.llm, ToolLLM)
        return self.models.llm.stream_tools(messages, tools.specs(), self.max_tokens)

    async def _call_tools(self, tools: ToolRegistry, calls: list[ToolCall],
                          out: asyncio.Queue[str | None]) -> list[ChatMessage]:
        """Run the calls (once committed), a filler said if they are slow; the messages that follow."""
        await self.committed.wait()
        started = time.perf_counter()
        running = asyncio.ensure_future(asyncio.gather(*(tools.run(c) for c in calls)))
        try:
            done, _ = await asyncio.wait({running}, timeout=tools.filler_after_s)
            if not done and tools.filler_text:
                out.put_nowait(tools.filler_text)
            results = await running
        finally:
            if not running.done():  # a barge-in or a dropped turn: the calls still running stop with it
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            self.times.tool_s += time.perf_counter() - started
        text = "".join(self.reply[self._said:]).strip()
        self._said = len(self.reply)
        messages: list[ChatMessage] = [{"role": "assistant", "content": text,
                                        "tool_calls": [c.message() for c in calls]}]
        for result in results:
            self.times.tools.append(result.record())
            self.ends_call = self.ends_call or result.ends_call
            self._queue.put_nowait(ToolUsed(result))
            messages.append({"role": "tool", "tool_call_id": result.call.id, "content": result.output})
        return messages

    async def _speak(self, sentence: str) -> None:
        tts = self.models.tts
        step = int(OUT_CHUNK_S * tts.sample_rate) * 2
        # Model work is served by deadline across sessions (services.threads): the first piece
        # is due now (a caller is waiting in silence), a later one only when the audio queued
        # before it has played out. So every waiting caller's first piece goes first.
        due = self.times.first_audio_ready + self._audio_s if self.times.first_audio_ready else None
        token = model_deadline.set(due)
        try:
            async for pcm in with_timeout(tts.synthesize(sentence), self.timeout_s):
                if not self.times.first_audio_ready:
                    pcm = trim_leading_silence(pcm, tts.sample_rate)  # TTS voices start with ~50 ms of it
                    self.times.first_audio_ready = self.clock()
                    gate = getattr(self.models.llm, "gate", None)
                    if gate is not None:
                        gate.set()
                self._audio_s += len(pcm) / 2 / tts.sample_rate
                for i in range(0, len(pcm), step):
                    self._queue.put_nowait(Audio(pcm[i:i + step], tts.sample_rate))
        finally:
            model_deadline.reset(token)


def trim_leading_silence(pcm: bytes, sample_rate: int, threshold: int = 300, keep_s: float = 0.01) -> bytes:
    """`pcm` (s16) from just before its first sample louder than `threshold` (-40 dBFS)."""
    samples = np.frombuffer(pcm, dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    if not loud.size:
        return pcm
    start = max(0, int(loud[0]) - int(keep_s * sample_rate))
    return pcm[start * 2:]


async def with_timeout(stream: AsyncIterator[T], timeout_s: float) -> AsyncIterator[T]:
    """Iterate `stream`, failing if any single item takes longer than `timeout_s` (a hung back-end).

    `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11, `wait_for` returns the result
    instead of raising when a cancel arrives just as the item is ready, so a barge-in that
    met a ready token was lost and the interrupted reply's LLM ran on to `max_tokens` (and
    its TTS on). Python 3.12's `wait_for` is built on `timeout` and has no such gap; keep
    `timeout` for the agent's model calls while 3.11 is supported.
    """
    iterator = stream.__aiter__()
    try:
        while True:
            try:
                async with asyncio.timeout(timeout_s):
                    item = await iterator.__anext__()
            except StopAsyncIteration:
                return
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
