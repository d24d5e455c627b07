"""One session's agent: runs its Conversation with real VAD, STT, LLM, TTS and the bus.

The asyncio adapter around the sans-I/O `Conversation` and `TurnDetector`: audio in -> VAD
(in a thread) -> turn events -> actions, each carried out here. A turn's model work is a
`ReplyPipeline`, started speculatively when the caller pauses and committed (or dropped) when
the end of the turn is decided; the task that relays its outputs is cancelled on barge-in.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import wave
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from voxline.agent.conversation import (
    APOLOGY,
    Action,
    CancelReply,
    ClearPlayback,
    Conversation,
    Emit,
    Respond,
    Speak,
    State,
    Transcribe,
)
from voxline.agent.models import Models
from voxline.agent.pipeline import OUT_CHUNK_S, Audio, Delta, Failed, ReplyPipeline, ReplyText, Transcript, with_timeout
from voxline.agent.turns import SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, TurnDetector
from voxline.bus.base import Bus
from voxline.bus.codec import AudioKind, AudioMessage, encode_json, event
from voxline.bus.topics import Topic
from voxline.logs import session_var
from voxline.services.base import ChatMessage

log = logging.getLogger(__name__)
MAX_INBOX = 250  # messages (5 s of audio) a session may queue before it sheds the oldest
MAX_TAKEOVER_INBOX = 1500  # a taken-over session replays up to 30 s of backlog (the rebalance gap)
HISTORY_WAIT_S = 3.0


@functools.cache
def recorded_apology() -> tuple[bytes, int]:
    """The apology as Piper's en_US-joe-medium said it (PCM, rate), for when the TTS is down."""
    with wave.open(str(Path(__file__).with_name("apology.wav"))) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def _int(value: Any, default: int) -> int:
    """An integer field of a control message, or `default` when it is not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


class SessionAgent:
    def __init__(self, session_id: str, models: Models, bus: Bus, conversation: Conversation,
                 detector: TurnDetector, timeout_s: float, max_tokens: int | None = None,
                 speculate: bool = True, resumed: bool = False) -> None:
        self.session_id = session_id
        self.models = models
        self.bus = bus
        self.conv = conversation
        self.detector = detector
        self.vad = models.vad.stream()
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.speculate = speculate
        self.listening = False
        self.last_seq = -1
        self.last_heard = time.time()  # last message of any kind from the media server
        self.out_seq = 0
        self.reply_task: asyncio.Task[None] | None = None
        self.reply_turn = 0
        self._speech_end = 0.0
        self._decided = 0.0
        self._speculation: ReplyPipeline | None = None
        self.inbox: asyncio.Queue[AudioMessage | dict[str, Any]] = asyncio.Queue()
        self.dropped = 0
        self._worker: asyncio.Task[None] | None = None
        self._history: dict[str, Any] | None = None
        self._history_ready = asyncio.Event()
        self._catching_up = resumed  # replaying a failed agent's backlog: a larger inbox
        if not resumed:
            self._history_ready.set()

    # -- inputs ---------------------------------------------------------------------------
    def deliver(self, item: AudioMessage | dict[str, Any]) -> None:
        """Queue a bus message for this session's worker; never blocks the consumer loop.

        A session that falls behind (CPU starved) sheds its oldest audio rather than delaying
        every other session or growing without bound.
        """
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"agent-{self.session_id}")
        if isinstance(item, dict) and item.get("type") == "history" and not self._history_ready.is_set():
            # A taken-over session's history goes before the audio backlog that preceded it.
            self._history = item
            self._history_ready.set()
            return
        limit = MAX_TAKEOVER_INBOX if self._catching_up else MAX_INBOX
        if self.inbox.qsize() >= limit:
            kept = [m for m in _drain(self.inbox) if not isinstance(m, AudioMessage)]
            self.dropped += limit - len(kept)
            log.warning("agent is behind: dropped %d audio chunks of this session so far", self.dropped,
                        extra={"session_id": self.session_id})
            for m in kept:
                self.inbox.put_nowait(m)
        self.inbox.put_nowait(item)

    async def _work(self) -> None:
        session_var.set(self.session_id)
        if not self._history_ready.is_set():
            # Taken over from a failed agent: the backlog since its last commit waits until
            # the media server has handed the conversation over (or a short while has passed).
            try:
                await asyncio.wait_for(self._history_ready.wait(), HISTORY_WAIT_S)
            except TimeoutError:
                log.warning("no history arrived for a taken-over session; going on without it")
            self._history_ready.set()
            if self._history is not None:
                await self._guarded(self.on_control(self._history))
        while True:
            pending = [await self.inbox.get(), *_drain(self.inbox)]
            if self._catching_up and self.inbox.empty():
                self._catching_up = False  # the backlog is in hand; from here on, live limits
            # In order; consecutive audio goes through VAD in one request (cheap catch-up).
            batch: list[AudioMessage] = []
            for item in [*pending, None]:
                if isinstance(item, AudioMessage):
                    batch.append(item)
                    continue
                await self._guarded(self.on_audio(batch) if batch else None)
                batch = []
                if item is not None:
                    await self._guarded(self.on_control(item))

    async def _guarded(self, step: Awaitable[None] | None) -> None:
        if step is None:
            return
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a bad message never stops this session's agent
            log.exception("agent failed on a message")

    async def on_audio(self, messages: list[AudioMessage]) -> None:
        fresh: list[AudioMessage] = []
        for msg in messages:
            if msg.seq <= self.last_seq and self.last_seq - msg.seq < 1_000_000:
                continue  # a replay (Kafka may redeliver the tail of a batch)
            self.last_seq = msg.seq
            if msg.kind is AudioKind.AUDIO and msg.sample_rate == 16_000:
                fresh.append(msg)
        self.last_heard = time.time()
        if not self.listening or not fresh:
            return
        windows = await self.models.vad_batch.process(self.vad, b"".join(m.pcm for m in fresh))
        chunk_end = fresh[-1].ts  # stamped when its last sample arrived
        for raw, prob in windows:
            for ev in self.detector.push(raw, prob):
                await self._on_turn_event(ev, chunk_end)

    async def on_control(self, obj: dict[str, Any]) -> None:
        self.last_heard = time.time()
        kind = obj.get("type")
        if kind == "listening":
            on = obj.get("listening") is True
            self.listening = on
            if not on:
                self.detector.reset()
                self.vad.reset()
                self._drop_speculation()
            await self.perform(self.conv.set_listening(on))
        elif kind == "history":
            messages = obj.get("messages")
            if isinstance(messages, list):
                valid = [ChatMessage(role=m["role"], content=m["content"]) for m in messages
                         if isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)]
                self.conv.restore(valid, _int(obj.get("turn"), 0))
                await self._log("session", f"resumed with {len(self.conv.history)} messages of history")
            if isinstance(obj.get("listening"), bool):
                await self.on_control({"type": "listening", "listening": obj["listening"]})
        elif kind == "playback.done":
            await self.perform(self.conv.playback_done(_int(obj.get("turn"), -1)))

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await self._cancel_reply()
        self._drop_speculation()

    # -- turn events ------------------------------------------------------------------------
    async def _on_turn_event(self, ev: object, chunk_end: float) -> None:
        if isinstance(ev, SpeechStarted):
            await self._log("vad", "speech started")
            await self.perform(self.conv.speech_started())
        elif isinstance(ev, SpeechPaused):
            if self.speculate and self.conv.state is State.USER_SPEAKING:
                self._drop_speculation()
                audio = self.conv.turn_audio(ev.pcm)
                self._speculation = self._pipeline(audio).start()
        elif isinstance(ev, SpeechResumed):
            self._drop_speculation()
        elif isinstance(ev, SpeechEnded):
            # Map the detector's audio position to wall-clock time via this chunk's stamp.
            self._speech_end = chunk_end - (self.detector.position_ms - ev.speech_end_ms) / 1000
            self._decided = time.time()
            await self._log("vad", f"end of turn after {ev.at_ms - ev.speech_end_ms} ms of silence")
            await self.perform(self.conv.speech_ended(ev.pcm))

    # -- actions ----------------------------------------------------------------------------
    async def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Emit):
                await self.emit(action.type, **action.fields)
            elif isinstance(action, Transcribe):
                await self._cancel_reply()
                pipeline, self._speculation = self._speculation, None
                if pipeline is None or pipeline.pcm != action.pcm:
                    if pipeline is not None:
                        pipeline.cancel()
                    pipeline = self._pipeline(action.pcm).start()
                else:
                    pipeline.times.speculative = True
                pipeline.times.speech_end, pipeline.times.decided = self._speech_end, self._decided
                self.reply_turn = action.turn
                self.reply_task = asyncio.create_task(self._run_turn(action.turn, pipeline))
            elif isinstance(action, CancelReply):
                if action.turn == self.reply_turn:
                    await self._cancel_reply()
            elif isinstance(action, ClearPlayback):
                await self._send_audio(AudioKind.CLEAR, action.turn)
            elif isinstance(action, Speak):
                await self._speak(action.turn, action.text)

    def _pipeline(self, pcm: bytes, text: str | None = None) -> ReplyPipeline:
        return ReplyPipeline(self.models, pcm, self.conv.messages(), self.timeout_s, self.max_tokens, text)

    async def _run_turn(self, turn: int, pipeline: ReplyPipeline) -> None:
        """Relay a committed pipeline's outputs into the conversation, the bus and the caller."""
        session_var.set(self.session_id)
        times = pipeline.times
        try:
            async for out in pipeline.outputs():
                if isinstance(out, Transcript):
                    note = ", speculative" if times.speculative else ""
                    await self._log("stt", f"transcript: {out.text!r} ({times.metrics()['stt_ms']} ms{note})")
                    actions = self.conv.transcribed(turn, out.text)
                    await self.perform([a for a in actions if not isinstance(a, Respond)])
                    if not any(isinstance(a, Respond) for a in actions):
                        pipeline.cancel()
                        return
                elif isinstance(out, Delta):
                    await self.emit("agent.text", text=out.text, turn=turn, final=False)
                elif isinstance(out, Audio):
                    if not times.first_audio_sent:
                        times.first_audio_sent = time.time()
                        await self._log("tts", f"first audio {times.metrics()['tts_first_audio_ms']} ms after the first sentence")
                        await self.perform(self.conv.reply_audio_started(turn))
                    await self._send_audio(AudioKind.AUDIO, turn, out.pcm, out.sample_rate)
                elif isinstance(out, ReplyText):
                    await self.emit("agent.text", text=out.text, turn=turn, final=True)
                    await self._log("llm", f"reply: {out.text!r}")
                elif isinstance(out, Failed):
                    await self._fail(turn, out.stage, out.error)
                    return
            if pipeline.messages:
                await self._send_audio(AudioKind.END, turn)
                await self.perform(self.conv.reply_finished(turn, "".join(pipeline.reply)))
                await self.emit("turn.metrics", turn=turn, metrics=times.metrics())
        except asyncio.CancelledError:
            pipeline.cancel()
            self.conv.reply_finished(turn, "".join(pipeline.reply), interrupted=True)
            raise

    async def _speak(self, turn: int, text: str) -> None:
        """Say fixed text (the apology after a failure) as the rest of `turn`.

        If the TTS itself is what failed, the apology still comes: a recording of it ships
        with the package.
        """
        try:
            async for pcm in with_timeout(self.models.tts.synthesize(text), self.timeout_s):
                await self._play(turn, pcm, self.models.tts.sample_rate)
        except Exception as exc:  # noqa: BLE001 - fall back to the recording
            if text != APOLOGY:
                await self.perform(self.conv.failed(turn, "tts", f"could not speak: {exc}"))
                return
            log.warning("tts failed for the apology (%s): playing the recorded one", exc)
            pcm, rate = recorded_apology()
            await self._play(turn, pcm, rate)
        await self._send_audio(AudioKind.END, turn)

    async def _play(self, turn: int, pcm: bytes, rate: int) -> None:
        if self.conv.state is State.THINKING:
            await self.perform(self.conv.reply_audio_started(turn))
        step = int(OUT_CHUNK_S * rate) * 2
        for i in range(0, len(pcm), step):
            await self._send_audio(AudioKind.AUDIO, turn, pcm[i:i + step], rate)

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
            self._speculation.cancel()
            self._speculation = None
