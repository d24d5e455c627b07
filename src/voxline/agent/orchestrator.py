"""The agent process's main loop: consume audio.in and control, one SessionAgent per session.

Sessions are created on their first message, whatever it is, so an agent that takes over a
partition from a failed one (Kafka consumer-group rebalance) picks its sessions up at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from voxline.agent.conversation import Conversation
from voxline.agent.models import Models
from voxline.agent.prompt import parse_examples
from voxline.agent.session_agent import SessionAgent
from voxline.agent.turns import TurnConfig, TurnDetector
from voxline.audio.echo import EchoCanceller, EchoConfig
from voxline.bus.base import Bus, Message
from voxline.bus.codec import AudioMessage, CodecError
from voxline.bus.messages import AgentResumed, Greet, SessionEnd, SessionStart, SetListening, decode_control, publish
from voxline.bus.topics import Topic
from voxline.config import Settings
from voxline.logs import session_var
from voxline.sessions.ids import is_valid_session_id

log = logging.getLogger(__name__)


class Orchestrator:
    def __init__(self, settings: Settings, bus: Bus, models: Models) -> None:
        self.settings = settings
        self.bus = bus
        self.models = models
        self.sessions: dict[str, SessionAgent] = {}
        self.ended: collections.OrderedDict[str, None] = collections.OrderedDict()  # late messages of these are dropped
        self._task: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        sub = await self.bus.subscribe([Topic.AUDIO_IN, Topic.CONTROL], group=self.settings.agent_group)
        self._task = asyncio.create_task(self._consume(sub), name="agent-consume")
        self._reaper = asyncio.create_task(self._reap(), name="agent-reaper")
        self.ready.set()

    async def stop(self) -> None:
        for task in (self._task, self._reaper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for agent in list(self.sessions.values()):
            await agent.close()
        self.sessions.clear()

    async def drain(self, timeout_s: float) -> None:
        """SIGTERM: finish the replies in flight (bounded), then leave the consumer group.

        Leaving commits what was consumed and hands this agent's partitions to the others at
        once (a rebalance: ~9 s on tansu before another agent reads the audio, measured in
        tests/distributed/test_agent_drain.py); the agent that takes a session over asks the media
        server for its history, so the conversation goes on there.
        """
        started = time.monotonic()
        replies = [a.reply_task for a in self.sessions.values() if a.reply_task is not None and not a.reply_task.done()]
        if replies:
            log.info("draining: waiting up to %.0f s for %d replies in flight", timeout_s, len(replies))
            await asyncio.wait(replies, timeout=timeout_s)
        if self._task is not None:
            self._task.cancel()  # _consume closes its subscription: the group rebalances now
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        # When the others' rebalance starts: what an operator compares with their take-over lines.
        log.info("drained: left the consumer group %.1f s after the drain began", time.monotonic() - started)

    async def _consume(self, sub: Any) -> None:
        try:
            async for message in sub:
                try:
                    await self._dispatch(message)
                except Exception:  # noqa: BLE001 - one bad message or session never stops the others
                    log.exception("agent failed to handle a message", extra={"session_id": message.key})
        finally:
            await sub.close()

    async def _dispatch(self, message: Message) -> None:
        if not is_valid_session_id(message.key):
            log.warning("dropped a bus message with a malformed key", extra={"topic": message.topic})
            return
        session_var.set(message.key)
        if message.key in self.ended:
            return
        if message.topic is Topic.AUDIO_IN:
            try:
                audio = AudioMessage.decode(message.value)
            except CodecError as exc:
                log.warning("dropped bad audio message: %s", exc)
                return
            (await self._session(message.key, resumed=True)).deliver(audio)
            return
        control = decode_control(message.value, message.key)
        if control is None:
            return  # counted and logged by the decoder
        if isinstance(control, SessionEnd):
            await self._close(message.key, "session ended")
            return
        agent = await self._session(message.key, resumed=not isinstance(control, SessionStart))
        if isinstance(control, SessionStart):
            agent.deliver(SetListening(session_id=message.key, listening=control.listening))
            agent.deliver(Greet(session_id=message.key))  # the agent speaks first, if a greeting is set
        else:
            agent.deliver(control)

    async def _close(self, session_id: str, reason: str) -> None:
        self.ended[session_id] = None
        while len(self.ended) > 10_000:
            self.ended.popitem(last=False)
        agent = self.sessions.pop(session_id, None)
        if agent is not None:
            await agent.close()
            log.info("session closed on the agent: %s", reason, extra={"session_id": session_id})

    async def _reap(self) -> None:
        """Forget sessions that went silent for longer than the idle timeout (a media server died)."""
        while True:
            await asyncio.sleep(5.0)
            cutoff = time.time() - self.settings.session_idle_timeout_s
            for sid, agent in list(self.sessions.items()):
                if agent.last_heard < cutoff:
                    await self._close(sid, "idle")

    async def _session(self, session_id: str, resumed: bool) -> SessionAgent:
        """The session's agent, created on first sight; `resumed` if it was running elsewhere."""
        agent = self.sessions.get(session_id)
        if agent is None:
            s = self.settings
            conversation = Conversation(s.system_prompt, s.max_history_messages,
                                        overlap_timeout_ms=s.false_interruption_timeout_ms,
                                        continue_ms=s.turn_continue_ms,
                                        examples=parse_examples(s.prompt_examples))
            detector = TurnDetector(TurnConfig(threshold=s.vad_threshold, min_speech_ms=s.min_speech_ms,
                                               pause_ms=s.speculation_pause_ms,
                                               trailing_ms=s.turn_tail_ms,
                                               tail_level_dbfs=s.turn_tail_level_dbfs,
                                               end_silence_ms=s.end_of_turn_silence_ms,
                                               min_end_silence_ms=s.end_of_turn_min_ms,
                                               max_end_silence_ms=s.max_end_of_turn_ms,
                                               model_threshold=s.end_of_turn_model_threshold,
                                               doubt_margin=s.end_of_turn_doubt_margin,
                                               sustained_ms=s.barge_in_min_speech_ms,
                                               max_turn_ms=int(s.max_turn_s * 1000)))
            agent = SessionAgent(session_id, self.models, self.bus, conversation, detector,
                                 timeout_s=s.model_timeout_s, max_tokens=s.llm_max_tokens,
                                 speculate=s.speculative_replies, resumed=resumed, greeting=s.greeting)
            agent.log_transcripts = s.log_transcripts
            agent.echo = EchoCanceller(EchoConfig(enabled=s.echo_cancel, max_lag_ms=s.echo_max_lag_ms,
                                                  suppress_r2=s.echo_suppress, caller_db=s.echo_caller_db,
                                                  caller_share=s.echo_caller_share))
            # A session first seen through its audio (failover) was listening.
            agent.listening = True
            self.sessions[session_id] = agent
            log.info("session %s on this agent", "taken over" if resumed else "opened")
            if resumed:  # ask the media server for the conversation so far
                await publish(self.bus, AgentResumed(session_id=session_id))
        return agent
