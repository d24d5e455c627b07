"""The turn side of a session's agent: the detector's events into the conversation.

A mixin of `SessionAgent` (which owns the state named below), like `ReplyRunner`: speech
started, paused, resumed, sustained and ended go to the sans-I/O `Conversation`; each pause's
cues (the end-of-turn model's score, the speculative transcript) go back to the
`TurnDetector`, which may end the turn at once; a sound over the agent's speech is
transcribed and judged (`_classify`). Decisions are the core's; this only carries them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from voxline.agent.conversation import Action, Conversation, State
from voxline.agent.endpoint import Decision, model_can_decide
from voxline.agent.models import Models
from voxline.agent.pipeline import ReplyPipeline
from voxline.agent.turns import (
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechSustained,
    TurnDetector,
    TurnEvent,
)
from voxline.services.base import readings_of

log = logging.getLogger("voxline.agent.session_agent")  # one logger for the session's agent


class TurnEvents:
    models: Models
    conv: Conversation
    detector: TurnDetector
    clock: Callable[[], float]
    timeout_s: float
    _speech_end: float
    _decided: float
    _decision: Decision | None
    _pause: int
    _unscored: tuple[int, bytes] | None  # a pause's audio the end-of-turn model may still score
    _speculation: ReplyPipeline | None
    _tasks: set[asyncio.Task[None]]

    async def perform(self, actions: list[Action]) -> None:
        raise NotImplementedError

    async def _log(self, stage: str, message: str, level: str = "info", redacted: str | None = None) -> None:
        raise NotImplementedError

    async def _guarded(self, step: Awaitable[None] | None) -> None:
        raise NotImplementedError

    async def _on_turn_event(self, ev: TurnEvent, chunk_end: float | None) -> None:
        if isinstance(ev, SpeechStarted):
            await self._log("vad", "speech started")
            await self.perform(self.conv.speech_started(ev.at_ms))
        elif isinstance(ev, SpeechPaused):
            self._pause = ev.pause
            scored = self.conv.state is State.USER_SPEAKING and self.models.turn_model is not None
            if scored:
                self._unscored = (ev.pause, self.conv.turn_audio(ev.pcm))
            await self.perform(self.conv.speech_paused(ev.pcm))
            if scored and self._speculation is None:  # no transcript is coming: the model now
                self._score_later(ev.pause, None)
        elif isinstance(ev, SpeechResumed):
            await self.perform(self.conv.speech_resumed())
        elif isinstance(ev, SpeechSustained):
            await self.perform(self.conv.speech_sustained())
        elif isinstance(ev, SpeechEnded):
            # Map the detector's audio position to wall-clock time via this chunk's stamp (a
            # cue that ends the turn between chunks: via the clock).
            behind_s = (self.detector.position_ms - ev.speech_end_ms) / 1000
            self._speech_end = (chunk_end if chunk_end is not None else self.clock()) - behind_s
            self._decided = self.clock()
            self._decision = ev.decision
            why = ev.decision.describe() if ev.decision else "the turn reached its maximum length"
            if self.conv.state is State.USER_SPEAKING:
                await self._log("turn", f"end of turn after {ev.at_ms - ev.speech_end_ms} ms of silence: {why}")
            await self.perform(self.conv.speech_ended(ev.pcm))

    async def _cue(self, pause: int, score: float | None = None, text: str | None = None,
                   words_coming: bool = False, score_coming: bool | None = None) -> None:
        """Give the detector what is now known about a pause; it may end the turn at once."""
        readings = readings_of(text) if text is not None else ()
        for ev in self.detector.cue(pause, score=score, text=text, words_coming=words_coming, readings=readings,
                                    score_coming=score_coming):
            await self._on_turn_event(ev, None)

    async def _score(self, pause: int, pcm: bytes) -> None:
        model = self.models.turn_model
        score = await model.score(pcm) if model is not None else None
        await self._cue(pause, score=score, score_coming=False)

    async def _classify(self, overlap: int, pause: int, pcm: bytes) -> None:
        """Transcribe a sound heard over the agent's speech; a failure counts as no words."""
        try:
            async with asyncio.timeout(self.timeout_s):  # not wait_for: see pipeline.with_timeout
                text = await self.models.stt.transcribe(pcm)
        except Exception as exc:  # noqa: BLE001 - a sound not understood does not stop the reply
            log.warning("could not transcribe a sound over the reply: %s", exc)
            text = ""
        await self.perform(self.conv.overlap_heard(overlap, text))
        await self._cue(pause, text=text)  # if it interrupted, its words are a cue to its end

    def _on_transcript(self, pause: int, text: str) -> None:
        scoring = self._score_later(pause, text)
        self._spawn(self._cue(pause, text=text, score_coming=scoring or None))

    def _score_later(self, pause: int, text: str | None) -> bool:
        """Score the pause's audio with the end-of-turn model once its words are known, and
        only if they leave the decision to it: run beside the speculative STT, the model took
        the cores from it at the moment the caller waits (the words decide most turns).
        Whether it is scoring."""
        unscored, self._unscored = self._unscored, None
        if unscored is None or unscored[0] != pause or (text is not None and not model_can_decide(text)):
            return False
        self._spawn(self._score(*unscored))
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
