"""One session's agent: runs its Conversation with real VAD, STT, LLM, TTS and the bus.

The asyncio adapter around the sans-I/O `Conversation` and `TurnDetector`: audio in ->
`inbound()` -> VAD -> turn events -> actions, each carried out here. Decisions are made in
the core; this only runs them (turn events in `turn_events.TurnEvents`, replies in
`replies.ReplyRunner`). A turn's model work is a `ReplyPipeline`, started
speculatively when the caller pauses (`Speculate`) and committed or dropped as the core
says; its transcript and the end-of-turn model's score go back to the `TurnDetector` as cues.
The task that relays a reply's outputs is cancelled on a real interruption.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from voxline.agent.conversation import (
    Action,
    CancelReply,
    Classify,
    ClearPlayback,
    Conversation,
    DropSpeculation,
    Emit,
    ForgetSpeech,
    PausePlayout,
    ResumePlayout,
    Speak,
    Speculate,
    Transcribe,
)
from voxline.agent.endpoint import Decision
from voxline.agent.models import Models
from voxline.agent.pipeline import ReplyPipeline
from voxline.agent.replies import ReplyRunner
from voxline.agent.turn_events import TurnEvents
from voxline.agent.turns import (
    TurnDetector,
)
from voxline.audio.echo import EchoCanceller
from voxline.bus.base import Bus
from voxline.bus.codec import AudioKind, AudioMessage
from voxline.bus.messages import (
    Control,
    Greet,
    History,
    PlaybackDone,
    Played,
    SetListening,
    encode,
    make_event,
    publish,
)
from voxline.bus.topics import Topic
from voxline.logs import session_var
from voxline.services.base import ChatMessage

log = logging.getLogger(__name__)
MAX_INBOX = 250  # messages (5 s of audio) a session may queue before it sheds the oldest
MAX_TAKEOVER_INBOX = 1500  # a taken-over session replays up to 30 s of backlog (the rebalance gap)
HISTORY_WAIT_S = 3.0


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


class SessionAgent(ReplyRunner, TurnEvents):
    def __init__(self, session_id: str, models: Models, bus: Bus, conversation: Conversation,
                 detector: TurnDetector, timeout_s: float, max_tokens: int | None = None,
                 speculate: bool = True, resumed: bool = False, greeting: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.session_id = session_id
        self.clock = clock  # wall-clock seconds: time.time, or a test's virtual clock
        self.greeting = greeting
        self.models = models
        self.bus = bus
        self.conv = conversation
        self.detector = detector
        self.vad = models.vad.stream()
        self.echo = EchoCanceller()  # the orchestrator sets its configuration
        self.log_transcripts = False  # Settings.log_transcripts: what was said in process logs and the logs topic
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.speculate = conversation.speculate = speculate
        self.listening = False
        self.last_seq = -1
        self.last_heard = clock()  # last message of any kind from the media server
        self.out_seq = 0
        self.reply_task: asyncio.Task[None] | None = None
        self.reply_turn = 0
        self.hangup_turn = -1
        self._speech_end = 0.0
        self._decided = 0.0
        self._decision: Decision | None = None
        self._pause = 0  # the detector's number of the pause being handled
        self._unscored: tuple[int, bytes] | None = None
        self._speculation: ReplyPipeline | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # cue and classification tasks, held until done
        self.inbox: asyncio.Queue[AudioMessage | Control] = asyncio.Queue()
        self.dropped = 0
        self._worker: asyncio.Task[None] | None = None
        self._history: History | None = None
        self._history_ready = asyncio.Event()
        self._catching_up = resumed  # replaying a failed agent's backlog: a larger inbox
        if not resumed:
            self._history_ready.set()

    # -- inputs ---------------------------------------------------------------------------
    def deliver(self, item: AudioMessage | Control) -> None:
        """Queue a bus message for this session's worker; never blocks the consumer loop.

        A session that falls behind (CPU starved) sheds its oldest audio rather than delaying
        every other session or growing without bound.
        """
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"agent-{self.session_id}")
        if isinstance(item, History) and not self._history_ready.is_set():
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
                async with asyncio.timeout(HISTORY_WAIT_S):
                    await self._history_ready.wait()
            except TimeoutError:
                log.warning("no history arrived for a taken-over session; going on without it")
            self._history_ready.set()
        if self._history is not None:  # also when it came before this worker first ran
            history, self._history = self._history, None
            await self._guarded(self.on_control(history))
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
        self.last_heard = self.clock()
        if not self.listening or not fresh:
            return
        chunk_end = fresh[-1].ts  # stamped when its last sample arrived
        pcm = self.inbound(b"".join(m.pcm for m in fresh), chunk_end)
        windows = await self.models.vad_batch.process(self.vad, pcm)
        for raw, prob in windows:
            for ev in self.detector.push(raw, prob):
                await self._on_turn_event(ev, chunk_end)
        await self.perform(self.conv.tick(self.detector.position_ms))

    def inbound(self, pcm: bytes, t: float) -> bytes:
        """The caller's 16 kHz PCM (its last sample captured at `t`) on its way to the VAD: the
        agent's own voice, sent back by a caller without echo cancellation, is muted."""
        return self.echo.process(pcm, t)

    async def on_control(self, msg: Control) -> None:
        self.last_heard = self.clock()
        if isinstance(msg, SetListening):
            self.listening = msg.listening
            if not msg.listening:
                self.detector.reset()
                self.vad.reset()
                self._drop_speculation()
            await self.perform(self.conv.set_listening(msg.listening))
        elif isinstance(msg, History):
            valid = [ChatMessage(role=m["role"], content=m["content"]) for m in msg.messages
                     if isinstance(m.get("role"), str) and isinstance(m.get("content"), str)]
            self.conv.restore(valid, msg.turn)
            await self._log("session", f"resumed with {len(self.conv.history)} messages of history")
            if msg.listening is not None:
                await self.on_control(SetListening(session_id=self.session_id, listening=msg.listening))
        elif isinstance(msg, PlaybackDone):
            await self.perform(self.conv.playback_done(msg.turn))
            if msg.turn == self.hangup_turn:  # the goodbye has been heard
                await self._log("tool", "ending the call, as the agent decided")
                await self.emit("agent.hangup", turn=msg.turn)
        elif isinstance(msg, Greet):
            await self.perform(self.conv.greet(self.greeting))
        elif isinstance(msg, Played):  # when the media server sent the reply: the echo's reference
            self.echo.played(msg.turn, msg.position_s, msg.at, msg.playing)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await self._cancel_reply()
        self._drop_speculation()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- actions ----------------------------------------------------------------------------
    async def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Emit):
                await self.emit(action.type, **action.fields)
            elif isinstance(action, Speculate):
                self._drop_speculation()
                self._speculation = self._pipeline(action.pcm, functools.partial(self._on_transcript, self._pause))
                self._speculation.start()
                await self._cue(self._pause, words_coming=True)
            elif isinstance(action, DropSpeculation):
                self._drop_speculation()
            elif isinstance(action, Transcribe):
                await self._commit(action)
            elif isinstance(action, CancelReply):
                if action.turn == self.reply_turn:
                    await self._cancel_reply()
            elif isinstance(action, ClearPlayback):
                await self._send_audio(AudioKind.CLEAR, action.turn)
            elif isinstance(action, PausePlayout):
                await self._send_audio(AudioKind.PAUSE, action.turn)
            elif isinstance(action, ResumePlayout):
                await self._send_audio(AudioKind.RESUME, action.turn)
            elif isinstance(action, Classify):
                self._spawn(self._classify(action.overlap, self._pause, action.pcm))
                await self._cue(self._pause, words_coming=True)
            elif isinstance(action, ForgetSpeech):
                self.detector.reset()
            elif isinstance(action, Speak):
                if asyncio.current_task() is self.reply_task:
                    await self._speak(action.turn, action.text)  # the apology, inside the failed reply
                else:  # the greeting: a reply of its own, interruptible like any other
                    await self._cancel_reply()
                    self.reply_turn = action.turn
                    self.reply_task = asyncio.create_task(self._speak(action.turn, action.text))

    async def emit(self, type_: str, **fields: Any) -> None:
        """Publish the typed event `type_` (bus.messages) on its topics."""
        await publish(self.bus, make_event(self.session_id, type_, **fields))

    async def _log(self, stage: str, message: str, level: str = "info", redacted: str | None = None) -> None:
        """A pipeline line: the process log, the session's events (its page) and the logs topic.

        A line that quotes what was said (`redacted` given) goes whole only to the session's
        own events unless `log_transcripts` is on: the process log and the logs topic (log
        shipping) get `redacted`. The session record keeps the transcript either way.
        """
        private = redacted is not None and not self.log_transcripts
        shown = redacted if private and redacted is not None else message
        log.log(logging.INFO if level == "info" else logging.WARNING, shown, extra={"stage": stage})
        if not private:
            await self.emit("log", stage=stage, level=level, message=message)
            return
        whole = make_event(self.session_id, "log", stage=stage, level=level, message=message)
        await self.bus.publish(Topic.EVENTS, self.session_id, encode(whole))
        await self.bus.publish(Topic.LOGS, self.session_id,
                               encode(make_event(self.session_id, "log", stage=stage, level=level, message=shown)))

    async def _send_audio(self, kind: AudioKind, turn: int, pcm: bytes = b"", rate: int = 16_000) -> None:
        self.out_seq += 1
        msg = AudioMessage(self.session_id, self.out_seq, pcm, rate, self.clock(), kind, turn)
        self.echo.sent(kind, pcm, msg.ts, rate, turn)  # what the caller will hear: the echo's reference
        await self.bus.publish(Topic.AUDIO_OUT, self.session_id, msg.encode())
