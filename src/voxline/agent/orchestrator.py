"""The agent process's main loop: consume audio.in and control, one SessionAgent per session.

Sessions are created on their first message, whatever it is, so an agent that takes over a
partition from a failed one (Kafka consumer-group rebalance) picks its sessions up at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from voxline.agent.conversation import Conversation
from voxline.agent.models import Models
from voxline.agent.session_agent import SessionAgent
from voxline.agent.turns import TurnConfig, TurnDetector
from voxline.bus.base import Bus, Message
from voxline.bus.codec import AudioMessage, CodecError, decode_json
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
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        sub = await self.bus.subscribe([Topic.AUDIO_IN, Topic.CONTROL], group=self.settings.agent_group)
        self._task = asyncio.create_task(self._consume(sub), name="agent-consume")
        self.ready.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for agent in list(self.sessions.values()):
            await agent.close()
        self.sessions.clear()

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
        if message.topic is Topic.AUDIO_IN:
            try:
                audio = AudioMessage.decode(message.value)
            except CodecError as exc:
                log.warning("dropped bad audio message: %s", exc)
                return
            await self._session(message.key).on_audio(audio)
            return
        try:
            control = decode_json(message.value)
        except CodecError as exc:
            log.warning("dropped bad control message: %s", exc)
            return
        if control["type"] == "session.end":
            agent = self.sessions.pop(message.key, None)
            if agent is not None:
                await agent.close()
                log.info("session closed on the agent")
            return
        agent = self._session(message.key)
        if control["type"] == "session.start":
            await agent.on_control({"type": "listening", "listening": bool(control.get("listening"))})
        else:
            await agent.on_control(control)

    def _session(self, session_id: str) -> SessionAgent:
        agent = self.sessions.get(session_id)
        if agent is None:
            s = self.settings
            conversation = Conversation(s.system_prompt, s.max_history_messages)
            detector = TurnDetector(TurnConfig(threshold=s.vad_threshold, min_speech_ms=s.min_speech_ms,
                                               end_silence_ms=s.end_of_turn_silence_ms,
                                               max_turn_ms=int(s.max_turn_s * 1000)))
            agent = SessionAgent(session_id, self.models, self.bus, conversation, detector,
                                 timeout_s=s.model_timeout_s, max_tokens=s.llm_max_tokens)
            # A session first seen through its audio (failover) was listening.
            agent.listening = True
            self.sessions[session_id] = agent
            log.info("session opened on the agent")
        return agent
