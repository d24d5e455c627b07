"""From the bus to the callers: agent audio to each session's peer, events to its watchers.

The relay keeps what the events say about a session (conversation state, turns, history,
counts) on the session record, a short backlog of each session's events for WebSocket
subscribers that arrive late, and feeds /metrics and the per-turn spans. It acts only on
sessions of this media server; the others' messages are another node's.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from voxline.bus.base import Subscription
from voxline.bus.codec import AudioMessage, CodecError
from voxline.bus.messages import (
    AgentHangup,
    AgentResumed,
    AgentText,
    ErrorEvent,
    Event,
    Interruption,
    StateChanged,
    TranscriptFinal,
    TurnMetrics,
    decode_event,
    to_dict,
)
from voxline.bus.topics import Topic
from voxline.media.metrics import MediaMetrics, TurnTracer
from voxline.rtc.peer import MediaPeer
from voxline.sessions.registry import Session, SessionRegistry

log = logging.getLogger(__name__)
BACKLOG = 200  # events kept per session for late WebSocket subscribers
RESUMABLE_CLOSE = 4001  # events WebSocket close code: the session lives on; resume its call (docs/web.md)
CLOSE_KEY = "_close"  # a watcher-queue item asking the WebSocket to close with this code (never sent)
HISTORY = 50  # conversation messages kept per session (for resume and hand-over)
MAX_WATCHER_QUEUE = 1000  # a WebSocket this far behind misses events rather than growing

Watcher = asyncio.Queue[dict[str, Any]]


class EventRelay:
    def __init__(self, registry: SessionRegistry, peers: dict[str, MediaPeer], metrics: MediaMetrics,
                 tracer: TurnTracer | None, changed: Callable[[str], None],
                 hand_over: Callable[[Session], Awaitable[None]],
                 hang_up: Callable[[Session], Awaitable[object]] | None = None) -> None:
        self.registry = registry
        self.peers = peers
        self.metrics = metrics
        self.tracer = tracer
        self._changed = changed  # the session's record needs a store write
        self._hand_over = hand_over  # an agent took the session over without its history
        self._hang_up = hang_up  # the agent ended the call (its end_call tool, after the goodbye)
        self.watchers: dict[str, set[Watcher]] = collections.defaultdict(set)
        self.backlog: dict[str, collections.deque[dict[str, Any]]] = {}

    async def run(self, sub: Subscription) -> None:
        async for message in sub:
            try:
                if message.topic is Topic.AUDIO_OUT:
                    peer = self.peers.get(message.key)
                    if peer is not None:
                        peer.playout.push(AudioMessage.decode(message.value))
                elif (ev := decode_event(message.value)) is not None:
                    await self.on_event(ev)
            except CodecError as exc:
                log.warning("dropped bad %s message: %s", message.topic.value, exc, extra={"session_id": message.key})
            except Exception:  # noqa: BLE001 - one bad message never stops the relay
                log.exception("relay failed on a message", extra={"session_id": message.key})

    async def on_event(self, ev: Event) -> None:
        session = self.registry.get(ev.session_id)
        if session is None:
            return  # another media server's session
        self.metrics.on_event(ev)
        if isinstance(ev, StateChanged):
            session.conversation_state = ev.state
        elif isinstance(ev, TurnMetrics):
            session.turns += 1
            session.turn_metrics.append({"turn": ev.turn, **ev.metrics})
            del session.turn_metrics[:-100]
            self._trace(ev)
        elif isinstance(ev, TranscriptFinal) and ev.text:
            self._remember(session, "user", ev.text)
        elif isinstance(ev, AgentText) and ev.final and ev.text:
            self._remember(session, "assistant", ev.text)
        elif isinstance(ev, AgentResumed):
            await self._hand_over(session)
        elif isinstance(ev, AgentHangup) and not session.ended and self._hang_up is not None:
            await self._hang_up(session)
        elif isinstance(ev, Interruption):
            session.interruptions += 1
        elif isinstance(ev, ErrorEvent):
            session.errors += 1
        if isinstance(ev, (TurnMetrics, TranscriptFinal, Interruption, ErrorEvent, StateChanged)) or (
                isinstance(ev, AgentText) and ev.final):
            self._changed(session.id)
        if ev.page:
            obj = to_dict(ev)
            self.backlog.setdefault(session.id, collections.deque(maxlen=BACKLOG)).append(obj)
            for queue in self.watchers.get(session.id, ()):
                if queue.qsize() < MAX_WATCHER_QUEUE:
                    queue.put_nowait(obj)

    def release_watchers(self, session_id: str) -> None:
        """The call left this server resumable (drain, stop): its pages' event streams close
        with `RESUMABLE_CLOSE`, which tells them to resume at once rather than wait for ICE
        to notice that the media stopped (several seconds)."""
        for queue in self.watchers.get(session_id, ()):
            queue.put_nowait({CLOSE_KEY: RESUMABLE_CLOSE})

    def forget_ended(self) -> None:
        """Drop the backlogs of sessions no longer in the registry."""
        for sid in [sid for sid in self.backlog if self.registry.get(sid) is None]:
            self.backlog.pop(sid, None)

    def _trace(self, ev: TurnMetrics) -> None:
        if self.tracer is None:
            return
        try:
            self.tracer.on_turn(to_dict(ev))
        except Exception:  # noqa: BLE001 - tracing never breaks the relay
            log.exception("could not record the turn's spans", extra={"session_id": ev.session_id})

    @staticmethod
    def _remember(session: Session, role: str, text: str) -> None:
        session.history.append({"role": role, "content": text})
        del session.history[:-HISTORY]
