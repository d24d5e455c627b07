"""One session's agent: runs its Conversation with real VAD, STT, LLM, TTS and the bus.

This is the asyncio adapter around the sans-I/O `Conversation` and `TurnDetector`: audio in
-> VAD (in a thread) -> turn events -> actions, each carried out here. A turn's work (STT,
LLM stream, TTS) is one cancellable task, so barge-in cancels all of it at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, TypeVar

from voxline.agent.chunking import SentenceChunker
from voxline.agent.conversation import (Action, CancelReply, ClearPlayback, Conversation, Emit,
                                        Respond, Speak, State, Transcribe)
from voxline.agent.turns import SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, TurnDetector
from voxline.agent.models import Models
from voxline.bus.base import Bus
from voxline.bus.codec import AudioKind, AudioMessage, encode_json, event
from voxline.bus.topics import Topic
from voxline.logs import session_var

log = logging.getLogger(__name__)
T = TypeVar("T")
OUT_CHUNK_S = 0.2  # reply audio is sent on the bus in pieces of at most this length


@dataclass
class TurnTimes:
    """Wall-clock marks of one turn, turned into the `turn.metrics` event."""

    speech_end: float
    decided: float
    stt_start: float = 0.0
    stt_end: float = 0.0
    llm_start: float = 0.0
    llm_first_token: float = 0.0
    first_sentence: float = 0.0
    first_audio: float = 0.0
    speculative: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        def ms(a: float, b: float) -> float | None:
            return round((b - a) * 1000, 1) if a and b else None

        return {
            "end_of_turn_ms": ms(self.speech_end, self.decided),
            "stt_ms": ms(self.stt_start, self.stt_end),
            "llm_first_token_ms": ms(self.llm_start, self.llm_first_token),
            "first_sentence_ms": ms(self.llm_start, self.first_sentence),
            "tts_first_audio_ms": ms(self.first_sentence, self.first_audio),
            "server_voice_to_voice_ms": ms(self.speech_end, self.first_audio),
            "speculative_stt": self.speculative,
            **self.extra,
        }


class SessionAgent:
    def __init__(self, session_id: str, models: Models, bus: Bus, conversation: Conversation,
                 detector: TurnDetector, timeout_s: float, max_tokens: int | None = None) -> None:
        self.session_id = session_id
        self.models = models
        self.bus = bus
        self.conv = conversation
        self.detector = detector
        self.vad = models.vad.stream()
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.listening = False
        self.last_seq = -1
        self.out_seq = 0
        self.reply_task: asyncio.Task[None] | None = None
        self.reply_turn = 0
        self.times: TurnTimes | None = None
        self._speculation: tuple[bytes, asyncio.Task[str]] | None = None
        self._lock = asyncio.Lock()  # audio is processed in order, one chunk at a time

    # -- inputs ---------------------------------------------------------------------------
    async def on_audio(self, msg: AudioMessage) -> None:
        if msg.seq <= self.last_seq and self.last_seq - msg.seq < 1_000_000:
            return  # a replay (Kafka may redeliver the tail of a batch)
        self.last_seq = msg.seq
        if not self.listening or msg.kind is not AudioKind.AUDIO:
            return
        async with self._lock:
            windows = await self.models.vad_thread.run(self.vad.process, msg.pcm)
            chunk_end = msg.ts + len(msg.pcm) / 2 / 16_000
            for raw, prob in windows:
                for ev in self.detector.push(raw, prob):
                    await self._on_turn_event(ev, chunk_end)

    async def on_control(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "listening":
            on = bool(obj.get("listening"))
            self.listening = on
            if not on:
                self.detector.reset()
                self.vad.reset()
            await self.perform(self.conv.set_listening(on))
        elif kind == "playback.done":
            await self.perform(self.conv.playback_done(int(obj.get("turn", -1))))

    async def close(self) -> None:
        await self._cancel_reply()
        self._drop_speculation()

    # -- turn events ------------------------------------------------------------------------
    async def _on_turn_event(self, ev: object, chunk_end: float) -> None:
        pos_to_wall = lambda pos_ms: chunk_end - (self.detector.position_ms - pos_ms) / 1000  # noqa: E731
        if isinstance(ev, SpeechStarted):
            await self._log("vad", "speech started")
            await self.perform(self.conv.speech_started())
        elif isinstance(ev, SpeechPaused):
            if self.conv.state is State.USER_SPEAKING:
                audio = self.conv.turn_audio(ev.pcm)
                self._speculation = (audio, asyncio.create_task(self.models.stt.transcribe(audio)))
        elif isinstance(ev, SpeechResumed):
            self._drop_speculation()
        elif isinstance(ev, SpeechEnded):
            self.times = TurnTimes(speech_end=pos_to_wall(ev.speech_end_ms), decided=time.time())
            await self._log("vad", f"end of turn after {ev.at_ms - ev.speech_end_ms} ms of silence")
            await self.perform(self.conv.speech_ended(ev.pcm))

    # -- actions ----------------------------------------------------------------------------
    async def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Emit):
                await self.emit(action.type, **action.fields)
            elif isinstance(action, Transcribe):
                await self._cancel_reply()
                self.reply_turn = action.turn
                self.reply_task = asyncio.create_task(self._run_turn(action.turn, action.pcm))
            elif isinstance(action, CancelReply):
                if action.turn == self.reply_turn:
                    await self._cancel_reply()
            elif isinstance(action, ClearPlayback):
                await self._send_audio(AudioKind.CLEAR, action.turn)
            elif isinstance(action, Speak):
                await self._speak(action.turn, action.text)
            elif isinstance(action, Respond):  # only reached outside a turn task
                await self._respond(action.turn, action.messages)

    async def _run_turn(self, turn: int, pcm: bytes) -> None:
        session_var.set(self.session_id)
        times = self.times or TurnTimes(speech_end=time.time(), decided=time.time())
        times.stt_start = time.time()
        try:
            text = await self._transcribe(pcm, times)
        except Exception as exc:  # noqa: BLE001 - a back-end fault (ServiceError, timeout, crash)
            await self._fail(turn, "stt", exc)
            return
        times.stt_end = time.time()
        await self._log("stt", f"transcript: {text!r} ({times.metrics()['stt_ms']} ms{', speculative' if times.speculative else ''})")
        for action in self.conv.transcribed(turn, text):
            if isinstance(action, Respond):
                await self._respond(turn, action.messages)
            else:
                await self.perform([action])

    async def _transcribe(self, pcm: bytes, times: TurnTimes) -> str:
        spec, self._speculation = self._speculation, None
        if spec is not None and spec[0] == pcm:
            times.speculative = True
            times.stt_start = min(times.stt_start, times.decided)
            return await asyncio.wait_for(spec[1], self.timeout_s)
        if spec is not None:
            spec[1].cancel()
        return await asyncio.wait_for(self.models.stt.transcribe(pcm), self.timeout_s)

    async def _respond(self, turn: int, messages: list[Any]) -> None:
        times = self.times or TurnTimes(speech_end=time.time(), decided=time.time())
        times.llm_start = time.time()
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        reply: list[str] = []
        producer = asyncio.create_task(self._generate(turn, messages, sentences, reply, times))
        stage = "tts"
        try:
            while (sentence := await sentences.get()) is not None:
                await self._say(turn, sentence, times)
            stage = "llm"
            await producer  # re-raises an LLM failure
            await self._send_audio(AudioKind.END, turn)
            await self.perform(self.conv.reply_finished(turn, "".join(reply)))
            await self.emit("turn.metrics", turn=turn, metrics=times.metrics())
        except asyncio.CancelledError:
            producer.cancel()
            self.conv.reply_finished(turn, "".join(reply), interrupted=True)
            raise
        except Exception as exc:  # noqa: BLE001 - a back-end fault; the session goes on
            producer.cancel()
            await self._fail(turn, stage, exc)

    async def _generate(self, turn: int, messages: list[Any], out: asyncio.Queue[str | None],
                        reply: list[str], times: TurnTimes) -> None:
        chunker = SentenceChunker()
        try:
            async for delta in _with_timeout(self.models.llm.stream(messages, self.max_tokens), self.timeout_s):
                if not times.llm_first_token:
                    times.llm_first_token = time.time()
                reply.append(delta)
                await self.emit("agent.text", text=delta, turn=turn, final=False)
                for sentence in chunker.push(delta):
                    times.first_sentence = times.first_sentence or time.time()
                    await out.put(sentence)
            for sentence in chunker.flush():
                times.first_sentence = times.first_sentence or time.time()
                await out.put(sentence)
            text = "".join(reply).strip()
            await self.emit("agent.text", text=text, turn=turn, final=True)
            await self._log("llm", f"reply: {text!r}")
        finally:
            await out.put(None)

    async def _say(self, turn: int, sentence: str, times: TurnTimes | None) -> None:
        tts = self.models.tts
        async for pcm in _with_timeout(tts.synthesize(sentence), self.timeout_s):
            step = int(OUT_CHUNK_S * tts.sample_rate) * 2
            for i in range(0, len(pcm), step):
                if times is not None and not times.first_audio:
                    times.first_audio = time.time()
                    await self._log("tts", f"first audio {times.metrics()['tts_first_audio_ms']} ms after the first sentence")
                    await self.perform(self.conv.reply_audio_started(turn))
                elif times is None and self.conv.state is State.THINKING:
                    await self.perform(self.conv.reply_audio_started(turn))
                await self._send_audio(AudioKind.AUDIO, turn, pcm[i:i + step], tts.sample_rate)

    async def _speak(self, turn: int, text: str) -> None:
        try:
            await self._say(turn, text, None)
            await self._send_audio(AudioKind.END, turn)
        except Exception as exc:  # noqa: BLE001
            await self.perform(self.conv.failed(turn, "tts", f"apology failed: {exc}"))

    async def _fail(self, turn: int, stage: str, exc: BaseException) -> None:
        message = f"{stage} failed: {exc or type(exc).__name__}"
        log.warning(message, extra={"stage": stage})
        await self.perform(self.conv.failed(turn, stage, message))

    # -- outputs ----------------------------------------------------------------------------
    async def emit(self, type_: str, **fields: Any) -> None:
        obj = event(self.session_id, type_, **fields)
        await self.bus.publish(Topic.EVENTS, self.session_id, encode_json(obj))
        if type_ == "log":
            await self.bus.publish(Topic.LOGS, self.session_id, encode_json(obj))
        elif type_ == "turn.metrics":
            await self.bus.publish(Topic.METRICS, self.session_id, encode_json(obj))

    async def _log(self, stage: str, message: str, level: str = "info") -> None:
        log.log(logging.INFO if level == "info" else logging.WARNING, message, extra={"stage": stage})
        await self.emit("log", stage=stage, level=level, message=message)

    async def _send_audio(self, kind: AudioKind, turn: int, pcm: bytes = b"", rate: int = 16_000) -> None:
        self.out_seq += 1
        msg = AudioMessage(self.session_id, self.out_seq, pcm, rate, time.time(), kind, turn)
        await self.bus.publish(Topic.AUDIO_OUT, self.session_id, msg.encode())

    async def _cancel_reply(self) -> None:
        task, self.reply_task = self.reply_task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - it is being discarded
                pass

    def _drop_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation[1].cancel()
            self._speculation = None


async def _with_timeout(stream: AsyncIterator[T], timeout_s: float) -> AsyncIterator[T]:
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
