"""The reply side of a session's agent: commit a turn's pipeline, relay its outputs, speak fixed text.

A mixin of `SessionAgent` (which owns the state named below): the pipeline's transcript,
text and audio go into the conversation, the bus and the caller; a failure becomes an
apology, and the apology itself has a recording for when the TTS is what failed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxline.agent.conversation import APOLOGY, Action, Conversation, Respond, State, Transcribe
from voxline.agent.endpoint import Decision
from voxline.agent.models import Models
from voxline.agent.pipeline import (
    OUT_CHUNK_S,
    Audio,
    Delta,
    Failed,
    ReplyPipeline,
    ReplyText,
    ToolUsed,
    Transcript,
    with_timeout,
)
from voxline.bus.codec import AudioKind
from voxline.logs import session_var

log = logging.getLogger(__name__)


@functools.cache
def recorded_apology() -> tuple[bytes, int]:
    """The apology as Piper's en_US-joe-medium said it (PCM, rate), for when the TTS is down."""
    with wave.open(str(Path(__file__).with_name("apology.wav"))) as w:
        return w.readframes(w.getnframes()), w.getframerate()


class ReplyRunner:
    session_id: str
    models: Models
    conv: Conversation
    clock: Callable[[], float]
    timeout_s: float
    max_tokens: int | None
    log_transcripts: bool
    reply_task: asyncio.Task[None] | None
    reply_turn: int
    hangup_turn: int  # a tool ended the call: hang up once this turn's reply has played
    _speculation: ReplyPipeline | None
    _speech_end: float
    _decided: float
    _decision: Decision | None

    async def perform(self, actions: list[Action]) -> None:
        raise NotImplementedError

    async def emit(self, type_: str, **fields: Any) -> None:
        raise NotImplementedError

    async def _log(self, stage: str, message: str, level: str = "info", redacted: str | None = None) -> None:
        raise NotImplementedError

    async def _send_audio(self, kind: AudioKind, turn: int, pcm: bytes = b"", rate: int = 16_000) -> None:
        raise NotImplementedError

    async def _commit(self, action: Transcribe) -> None:
        """Answer the turn: with the speculative reply when the core says it is the one."""
        await self._cancel_reply()
        pipeline, self._speculation = self._speculation, None
        if action.speculative and pipeline is not None:
            pipeline.times.speculative = True
        else:
            if pipeline is not None:
                pipeline.cancel()
            pipeline = self._pipeline(action.pcm).start()
        times = pipeline.times
        times.speech_end, times.decided = self._speech_end, self._decided
        if self._decision is not None:
            times.end_of_turn_wait_ms, times.end_of_turn_reason = self._decision.wait_ms, self._decision.reason
            times.end_of_turn_score = self._decision.score
        pipeline.commit()  # its tool calls may run now
        self.reply_turn = action.turn
        self.reply_task = asyncio.create_task(self._run_turn(action.turn, pipeline))

    def _pipeline(self, pcm: bytes, on_transcript: Callable[[str], None] | None = None) -> ReplyPipeline:
        return ReplyPipeline(self.models, pcm, self.conv.reply_history(), self.timeout_s, self.max_tokens,
                             on_transcript=on_transcript, clock=self.clock)

    async def _run_turn(self, turn: int, pipeline: ReplyPipeline) -> None:
        """Relay a committed pipeline's outputs into the conversation, the bus and the caller."""
        session_var.set(self.session_id)
        times = pipeline.times
        try:
            async for out in pipeline.outputs():
                if isinstance(out, Transcript):
                    note = ", speculative" if times.speculative else ""
                    took = f"({times.metrics()['stt_ms']} ms{note})"
                    await self._log("stt", f"transcript: {out.text!r} {took}",
                                    redacted=f"transcript: {len(out.text)} characters {took}")
                    actions = self.conv.transcribed(turn, out.text)
                    await self.perform([a for a in actions if not isinstance(a, Respond)])
                    if not any(isinstance(a, Respond) for a in actions):
                        pipeline.cancel()
                        return
                elif isinstance(out, Delta):
                    self.conv.reply_said(turn, out.text)
                    await self.emit("agent.text", text=out.text, turn=turn, final=False)
                elif isinstance(out, Audio):
                    first = not times.first_audio_sent
                    if first:
                        times.first_audio_sent = self.clock()
                        await self.perform(self.conv.reply_audio_started(turn))
                    await self._send_audio(AudioKind.AUDIO, turn, out.pcm, out.sample_rate)
                    if first:  # the caller's audio first, then the bookkeeping
                        m = times.metrics()
                        await self._log("tts", f"first audio {m['tts_first_audio_ms']} ms after the first sentence, "
                                               f"{m['audio_after_commit_ms']} ms after the end of the turn")
                elif isinstance(out, ReplyText):
                    await self.emit("agent.text", text=out.text, turn=turn, final=True)
                    await self._log("llm", f"reply: {out.text!r}", redacted=f"reply: {len(out.text)} characters")
                elif isinstance(out, ToolUsed):
                    r = out.result
                    await self._log("tool", f"{r.call.name} {'answered' if r.ok else 'failed'} in {r.ms:.0f} ms",
                                    level="info" if r.ok else "warning")
                elif isinstance(out, Failed):
                    await self._fail(turn, out.stage, out.error)
                    return
            if pipeline.messages:
                await self._send_audio(AudioKind.END, turn)
                await self.perform(self.conv.reply_finished(turn, "".join(pipeline.reply)))
                await self.emit("turn.metrics", turn=turn, metrics=times.metrics())
                if pipeline.ends_call:
                    self.hangup_turn = turn
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
        message = f"{stage} failed: {str(exc) or type(exc).__name__}"  # a timeout has no text of its own
        log.warning(message, extra={"stage": stage})
        await self.perform(self.conv.failed(turn, stage, message))

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
