"""The media server's state and background work, independent of HTTP routing.

It owns the session registry and the peers, relays agent audio and events from the bus to
the right caller, keeps a short backlog of each session's events for late WebSocket
subscribers, and ends sessions whose peer failed or that went idle.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from voxline.bus.base import Bus, Subscription
from voxline.bus.codec import AudioMessage, CodecError, decode_json, encode_json, event
from voxline.bus.topics import Topic
from voxline.config import Settings
from voxline.logs import session_var
from voxline.media.peer import MediaPeer
from voxline.sessions.registry import Session, SessionRegistry, SessionState

log = logging.getLogger(__name__)
BACKLOG = 200
HISTORY = 50
CONNECT_TIMEOUT_S = 30.0


class MediaServer:
    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.registry = SessionRegistry(settings.max_sessions)
        self.peers: dict[str, MediaPeer] = {}
        self.watchers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = collections.defaultdict(set)
        self.backlog: dict[str, collections.deque[dict[str, Any]]] = {}
        self.ready = False
        self.counters: collections.Counter[str] = collections.Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self.bus.subscribe([Topic.AUDIO_OUT, Topic.EVENTS])
        self._tasks = [asyncio.create_task(self._relay(self._sub), name="media-relay"),
                       asyncio.create_task(self._reap(), name="media-reaper")]
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for sid in [s.id for s in self.registry.live()]:
            await self.end_session(sid, "server shutdown")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sub is not None:
            await self._sub.close()

    # -- sessions ---------------------------------------------------------------------------
    async def open_session(self, offer_sdp: str, client_ref: str | None) -> tuple[Session, str]:
        """Create a session for a WHIP offer; returns it with the SDP answer."""
        session = self.registry.create(client_ref)
        session_var.set(session.id)
        peer = MediaPeer(session, self.bus, self.end_session, self.settings.rtc_jitter_prefetch)
        try:
            answer = await peer.answer(offer_sdp)
        except Exception:
            await peer.close()
            self.registry.end(session.id, "bad offer")
            raise
        self.peers[session.id] = peer
        session.state = SessionState.CONNECTED
        session.listening = self.settings.listen_on_connect
        self.counters["sessions_created"] += 1
        await self.control(session.id, "session.start", listening=session.listening, client_ref=client_ref)
        ref = f" (replaces client ref {client_ref})" if client_ref else ""
        await self.publish_event(session.id, "log", stage="whip", level="info",
                                 message=f"Backend session ID issued: {session.id}{ref}")
        log.info("session created", extra={"client_ref": client_ref})
        return session, answer

    async def end_session(self, session_id: str, reason: str) -> Session | None:
        session = self.registry.end(session_id, reason)
        if session is None:
            return None
        session_var.set(session_id)
        peer = self.peers.pop(session_id, None)
        if peer is not None:
            await peer.close()
        await self.control(session_id, "session.end", reason=reason)
        await self.publish_event(session_id, "session.ended", reason=reason)
        self.counters["sessions_ended"] += 1
        log.info("session ended: %s", reason)
        return session

    async def set_listening(self, session: Session, on: bool) -> None:
        session.listening = on
        session.touch()
        await self.control(session.id, "listening", listening=on)
        await self.publish_event(session.id, "log", stage="session", level="info",
                                 message=f"listening {'on' if on else 'off'}")

    # -- bus --------------------------------------------------------------------------------
    async def control(self, session_id: str, type_: str, **fields: Any) -> None:
        await self.bus.publish(Topic.CONTROL, session_id, encode_json({"type": type_, "session_id": session_id, **fields}))

    async def publish_event(self, session_id: str, type_: str, **fields: Any) -> None:
        await self.bus.publish(Topic.EVENTS, session_id, encode_json(event(session_id, type_, **fields)))

    async def _relay(self, sub: Subscription) -> None:
        async for message in sub:
            try:
                if message.topic is Topic.AUDIO_OUT:
                    peer = self.peers.get(message.key)
                    if peer is not None:
                        peer.playout.push(AudioMessage.decode(message.value))
                else:
                    self._on_event(decode_json(message.value))
            except CodecError as exc:
                log.warning("dropped bad %s message: %s", message.topic.value, exc, extra={"session_id": message.key})
            except Exception:  # noqa: BLE001 - one bad message never stops the relay
                log.exception("relay failed on a message", extra={"session_id": message.key})

    def _on_event(self, obj: dict[str, Any]) -> None:
        sid = obj.get("session_id")
        session = self.registry.get(sid) if isinstance(sid, str) else None
        if session is None:
            return  # another media server's session
        kind = obj["type"]
        if kind == "state":
            session.conversation_state = str(obj.get("state"))
        elif kind == "turn.metrics":
            session.turns += 1
            session.turn_metrics.append({"turn": obj.get("turn"), **(obj.get("metrics") or {})})
            del session.turn_metrics[:-100]
        elif kind == "transcript.final" and obj.get("text"):
            self._remember(session, "user", str(obj["text"]))
        elif kind == "agent.text" and obj.get("final") and obj.get("text"):
            self._remember(session, "assistant", str(obj["text"]))
        elif kind == "agent.resumed":
            # An agent picked this session up without its history: hand it over (or, for a
            # session that has ended meanwhile, tell it so).
            if session.ended:
                asyncio.ensure_future(self.control(session.id, "session.end", reason=session.end_reason))
            else:
                asyncio.ensure_future(self.control(session.id, "history", messages=session.history,
                                                   turn=session.turns, listening=session.listening))
        elif kind == "interruption":
            session.interruptions += 1
        elif kind == "error":
            session.errors += 1
        self.backlog.setdefault(session.id, collections.deque(maxlen=BACKLOG)).append(obj)
        for queue in self.watchers.get(session.id, ()):
            if queue.qsize() < 1000:
                queue.put_nowait(obj)

    @staticmethod
    def _remember(session: Session, role: str, text: str) -> None:
        session.history.append({"role": role, "content": text})
        del session.history[:-HISTORY]

    # -- cleanup ----------------------------------------------------------------------------
    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for session in self.registry.idle(self.settings.session_idle_timeout_s, now):
                await self.end_session(session.id, "idle timeout")
            for session in list(self.registry.live()):
                peer = self.peers.get(session.id)
                if peer is not None and peer.pc.connectionState != "connected" and now - session.created_at > CONNECT_TIMEOUT_S:
                    await self.end_session(session.id, f"peer not connected after {CONNECT_TIMEOUT_S:.0f} s")
            for sid in [sid for sid in self.backlog if (s := self.registry.get(sid)) is None]:
                self.backlog.pop(sid, None)
