"""The media server's state and background work, independent of HTTP routing.

It owns the session registry and the peers, relays agent audio and events from the bus to
the right caller, keeps a short backlog of each session's events for late WebSocket
subscribers, and ends sessions whose peer failed or that went idle.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from collections.abc import Coroutine
from typing import Any

from voxline.bus.base import Bus, Subscription
from voxline.bus.codec import AudioMessage, CodecError, decode_json, encode_json, event
from voxline.bus.topics import Topic
from voxline.config import Settings, parse_port_range
from voxline.logs import session_var
from voxline.media.metrics import MediaMetrics, TurnTracer
from voxline.media.resume import ResumeError, new_resume_token, token_matches
from voxline.rtc.peer import MediaPeer, PeerLimits
from voxline.sessions.registry import Session, SessionRegistry, SessionState
from voxline.sessions.store import LIVE_STATES, SessionQuery, SessionStore
from voxline.sessions.store_memory import MemoryStore

log = logging.getLogger(__name__)
BACKLOG = 200
HISTORY = 50
FLUSH_EVERY_S = 0.5  # turn and history changes reach the store at most this late
SWEEP_EVERY_S = 10.0


class MediaServer:
    def __init__(self, settings: Settings, bus: Bus, store: SessionStore | None = None,
                 tracer: TurnTracer | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.store: SessionStore = store if store is not None else MemoryStore()
        self.node = settings.node_id or f"{socket.gethostname()}:{settings.port}"
        self.metrics = MediaMetrics()
        self.tracer = tracer if tracer is not None else TurnTracer.from_settings(settings.otel)
        self._dirty: set[str] = set()  # sessions changed since their last store write
        self._attached: dict[str, float] = {}  # when the current peer was attached
        self._drop_reason: dict[str, str] = {}  # why a disconnected session will end if not resumed
        self.registry = SessionRegistry(settings.max_sessions)
        self.peers: dict[str, MediaPeer] = {}
        self.watchers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = collections.defaultdict(set)
        self.backlog: dict[str, collections.deque[dict[str, Any]]] = {}
        self.ready = False
        self.draining = False  # SIGTERM: no new sessions, live calls go on until they end or the drain ends
        self.counters: collections.Counter[str] = collections.Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()  # control messages on their way (held, not lost)
        self._sub: Subscription | None = None
        self.peer_limits = PeerLimits()

    async def start(self) -> None:
        self.peer_limits = PeerLimits.from_settings(self.settings)  # after the host addresses are set
        await self.store.start()
        await self._recover()
        self._sub = await self.bus.subscribe([Topic.AUDIO_OUT, Topic.EVENTS])
        self._tasks = [asyncio.create_task(self._relay(self._sub), name="media-relay"),
                       asyncio.create_task(self._reap(), name="media-reaper"),
                       asyncio.create_task(self._flusher(), name="media-store-writer")]
        self.ready = True

    async def drain(self, timeout_s: float) -> int:
        """Stop taking new sessions; let live calls go on for up to `timeout_s`; hand the rest over.

        What a rollout needs: `/readyz` and `POST /whip` answer 503 from now on, so the load
        balancer sends new callers elsewhere, while the calls here carry on. Calls still up when
        the time is over are dropped resumable (`disconnected`, saved to the store): with a
        shared store their callers resume on another media server with their history. Returns
        how many calls were handed over that way.
        """
        self.draining = True
        log.info("draining: %d calls live, waiting up to %.0f s", len(self.peers), timeout_s)
        ended = [asyncio.ensure_future(peer.closed.wait()) for peer in self.peers.values()]
        if ended:
            await asyncio.wait(ended, timeout=timeout_s)
            for waiter in ended:
                waiter.cancel()
        handed = 0
        for peer in list(self.peers.values()):
            handed += await self._disconnect(peer, "media server draining")
        await self.flush()
        if handed:
            log.warning("drain over: %d calls handed over (resumable for %.0f s)", handed, self.settings.resume_grace_s)
        return handed

    async def stop(self) -> None:
        self.ready = False
        for peer in list(self.peers.values()):  # resumable: a restarted or another server takes them
            await self._disconnect(peer, "media server stopped")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._sends, return_exceptions=True)
        if self._sub is not None:
            await self._sub.close()
        await self.flush()
        await self.store.close()

    # -- sessions ---------------------------------------------------------------------------
    async def open_session(self, offer_sdp: str, client_ref: str | None) -> tuple[Session, str, str]:
        """Create a session for a WHIP offer; returns it with the SDP answer and its resume token."""
        session = self.registry.create(client_ref)
        session.node = self.node
        token, session.resume_token_hash = new_resume_token()
        session_var.set(session.id)
        peer = self._new_peer(session)
        try:
            answer = await peer.answer(offer_sdp)
        except Exception:
            await peer.close()
            self.registry.end(session.id, "bad offer")
            raise
        self.peers[session.id] = peer
        self._attached[session.id] = time.time()
        session.state = SessionState.CONNECTED
        session.listening = self.settings.listen_on_connect
        self.counters["sessions_created"] += 1
        self.metrics.created += 1
        await self._save(session)
        await self.control(session.id, "session.start", listening=session.listening, client_ref=client_ref)
        ref = f" (replaces client ref {client_ref})" if client_ref else ""
        await self.publish_event(session.id, "log", stage="whip", level="info",
                                 message=f"Backend session ID issued: {session.id}{ref}")
        log.info("session created", extra={"client_ref": client_ref})
        return session, answer, token

    async def end_session(self, session_id: str, reason: str) -> Session | None:
        session = self.registry.end(session_id, reason)
        if session is None:
            return None
        session_var.set(session_id)
        peer = self.peers.pop(session_id, None)
        self._attached.pop(session_id, None)
        self._drop_reason.pop(session_id, None)
        session.disconnected_at = None
        if peer is not None:
            await self._close_peer(peer)
        await self.control(session_id, "session.end", reason=reason)
        await self.publish_event(session_id, "session.ended", reason=reason)
        self.counters["sessions_ended"] += 1
        self.metrics.ended[reason] += 1
        await self._save(session)
        log.info("session ended: %s", reason)
        return session

    async def set_listening(self, session: Session, on: bool) -> None:
        session.listening = on
        session.touch()
        await self.control(session.id, "listening", listening=on)
        await self.publish_event(session.id, "log", stage="session", level="info",
                                 message=f"listening {'on' if on else 'off'}")

    # -- bus --------------------------------------------------------------------------------
    def _send_later(self, send: Coroutine[Any, Any, None]) -> None:
        """Run a control send from the relay without waiting for it; held until done, awaited at stop."""
        task = asyncio.create_task(send)
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def control(self, session_id: str, type_: str, **fields: Any) -> None:
        await self.bus.publish(Topic.CONTROL, session_id, encode_json({"type": type_, "session_id": session_id, **fields}))

    async def publish_event(self, session_id: str, type_: str, **fields: Any) -> None:
        payload = encode_json(event(session_id, type_, **fields))
        await self.bus.publish(Topic.EVENTS, session_id, payload)
        if type_ == "log":  # the media server's own pipeline lines (whip, session) go to log shipping too
            await self.bus.publish(Topic.LOGS, session_id, payload)

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
        self.metrics.on_event(obj)
        if kind in ("turn.metrics", "transcript.final", "agent.text", "interruption", "error", "state") and (
                kind != "agent.text" or obj.get("final")):
            self._dirty.add(session.id)
        if kind == "turn.metrics" and self.tracer is not None:
            try:
                self.tracer.on_turn(obj)
            except Exception:  # noqa: BLE001 - tracing never breaks the relay
                log.exception("could not record the turn's spans", extra={"session_id": session.id})
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
                self._send_later(self.control(session.id, "session.end", reason=session.end_reason))
            else:
                self._send_later(self.control(session.id, "history", messages=session.history,
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
        """Once a second: end idle, expired and never-connected sessions; no error ends this loop."""
        last_sweep = 0.0
        while True:
            await asyncio.sleep(1.0)
            try:
                last_sweep = await self._reap_once(last_sweep)
            except Exception:  # noqa: BLE001 - one failure must not stop every later cleanup
                log.exception("session reaper failed; trying again in a second")

    async def _reap_once(self, last_sweep: float) -> float:
        now = time.time()
        for session in self.registry.idle(self.settings.session_idle_timeout_s, now):
            if session.state is SessionState.DISCONNECTED:
                await self._expire(session)
            else:
                await self.end_session(session.id, "idle timeout")
        for session in list(self.registry.live()):
            if session.state is SessionState.DISCONNECTED:
                if now - (session.disconnected_at or now) > self.settings.resume_grace_s:
                    await self._expire(session)
                continue
            peer = self.peers.get(session.id)
            attached = self._attached.get(session.id, session.created_at)
            limit = self.settings.session_connect_timeout_s
            if peer is not None and peer.pc.connectionState != "connected" and now - attached > limit:
                await self.end_session(session.id, f"peer not connected after {limit:g} s")
        if now - last_sweep > SWEEP_EVERY_S:
            last_sweep = now
            await self._sweep_store(now)
        for sid in [sid for sid in self.backlog if self.registry.get(sid) is None]:
            self.backlog.pop(sid, None)
        return last_sweep

    # -- drops and resumes ------------------------------------------------------------------
    def _new_peer(self, session: Session) -> MediaPeer:
        """A peer whose close callback knows which peer closed (a resumed session has a newer one)."""
        peer: MediaPeer | None = None

        async def closed(_: str, reason: str) -> None:
            if peer is not None:
                await self._peer_closed(peer, reason)

        peer = MediaPeer(session, self.bus, closed, self.settings.rtc_jitter_prefetch, self.settings.rtc_send_silence,
                         parse_port_range(self.settings.rtc_port_range), self.settings.rtc_announced_address,
                         self.peer_limits)
        return peer

    async def _close_peer(self, peer: MediaPeer) -> None:
        """Close a peer that carried a call, keeping its counts for /metrics' counters."""
        await peer.close()
        self.metrics.retired.update(peer.counts())

    async def _peer_closed(self, peer: MediaPeer, reason: str) -> None:
        """The caller's connection failed or closed without DELETE: resumable until the grace ends."""
        await self._disconnect(peer, reason)

    async def _disconnect(self, peer: MediaPeer, reason: str) -> int:
        """Drop this peer's call resumably (1), or end it when resuming is off (0)."""
        session = peer.session
        if self.peers.get(session.id) is not peer or session.ended:
            return 0  # replaced by a resumed peer, or already ended
        if self.settings.resume_grace_s <= 0:
            await self.end_session(session.id, reason)
            return 0
        session_var.set(session.id)
        self.peers.pop(session.id, None)
        self._attached.pop(session.id, None)
        await self._close_peer(peer)
        session.state = SessionState.DISCONNECTED
        session.disconnected_at = time.time()
        self._drop_reason[session.id] = reason
        self.metrics.disconnected += 1
        log.info("caller disconnected (%s): resumable for %.0f s", reason, self.settings.resume_grace_s)
        await self.publish_event(session.id, "log", stage="session", level="warning",
                                 message=f"caller disconnected ({reason}); resumable for {self.settings.resume_grace_s:.0f} s")
        await self._save(session)
        return 1

    async def _expire(self, session: Session) -> None:
        """A disconnected session nobody resumed in time: end it, unless another node took it."""
        stored = await self._load(session.id)
        if stored is not None and stored.node != self.node and not stored.ended:
            self.registry.end(session.id, "resumed on another media server")  # local copy only
            self._drop_reason.pop(session.id, None)
            return
        await self.end_session(session.id, self._drop_reason.pop(session.id, "caller disconnected"))

    async def resume_session(self, session_id: str, token: str, offer_sdp: str) -> tuple[Session, str]:
        """Attach a new peer to a live or disconnected session whose resume token matches."""
        session = self.registry.get(session_id)
        adopted = session is None or session.ended
        if adopted:
            session = await self._load(session_id)  # another node's, or from before a restart
        if session is None or not token_matches(session.resume_token_hash, token):
            raise ResumeError(404, "resume_refused", "no resumable session with this ID and resume token")
        if session.ended:
            raise ResumeError(409, "session_ended", f"session {session_id} has ended ({session.end_reason}): start a new one")
        now = time.time()
        if adopted and session.state is not SessionState.DISCONNECTED:
            raise ResumeError(409, "session_active", "the session is live on another media server; retry shortly")
        if session.state is SessionState.DISCONNECTED and now - (session.disconnected_at or now) > self.settings.resume_grace_s:
            if not adopted:
                await self._expire(session)
            raise ResumeError(409, "resume_expired", f"the {self.settings.resume_grace_s:.0f} s resume grace period is over")
        session_var.set(session_id)
        peer = self._new_peer(session)
        try:
            answer = await peer.answer(offer_sdp)
        except Exception:
            await peer.close()
            raise
        if adopted:
            self.registry.adopt(session)
        old = self.peers.pop(session_id, None)
        self.peers[session_id] = peer
        self._attached[session_id] = now
        self._drop_reason.pop(session_id, None)
        session.state = SessionState.CONNECTED
        session.disconnected_at = None
        session.node = self.node
        session.touch(now)
        if old is not None:
            await self._close_peer(old)
        self.metrics.resumed += 1
        # An agent that still has the conversation just carries on; one that lost it (restart,
        # failover) sees a control for an unknown session and asks for the history.
        await self.control(session_id, "listening", listening=session.listening)
        await self.publish_event(session_id, "log", stage="whip", level="info",
                                 message=f"Session resumed: {session_id} ({len(session.history)} messages of history kept)")
        log.info("session resumed", extra={"client_ref": session.client_ref})
        await self._save(session)
        return session, answer

    # -- store ------------------------------------------------------------------------------
    async def _recover(self) -> None:
        """Sessions this node held when it stopped without cleanup (kill -9, crash, OOM).

        They become `disconnected`: their callers may resume within the grace period, and the
        rest end with reason "server restart".
        """
        try:
            orphans = await self.store.query(SessionQuery(states=LIVE_STATES, node=self.node))
        except Exception:  # noqa: BLE001 - a broken store must not keep the server down
            log.exception("could not read the session store at start-up")
            self.metrics.store_errors += 1
            return
        now = time.time()
        for session in orphans:
            session.state = SessionState.DISCONNECTED
            session.disconnected_at = now
            session.touch(now)
            self.registry.adopt(session)
            self._drop_reason[session.id] = "server restart"
        if orphans:
            log.warning("%d sessions were live when this server last stopped: resumable for %.0f s",
                        len(orphans), self.settings.resume_grace_s)
            await self._save(*orphans)

    async def _sweep_store(self, now: float) -> None:
        """End disconnected sessions of other nodes that nobody resumed (their node is gone)."""
        try:
            stale = await self.store.query(SessionQuery(states=(SessionState.DISCONNECTED.value,), limit=500))
        except Exception:  # noqa: BLE001
            self.metrics.store_errors += 1
            return
        grace = max(self.settings.resume_grace_s, 0) + SWEEP_EVERY_S
        for s in stale:
            if s.node != self.node and self.registry.get(s.id) is None and now - (s.disconnected_at or now) > grace:
                s.state, s.ended_at, s.end_reason = SessionState.ENDED, now, "media server lost"
                s.listening = False
                await self._save(s)

    async def _load(self, session_id: str) -> Session | None:
        try:
            return await self.store.get(session_id)
        except Exception:  # noqa: BLE001
            log.exception("session store read failed", extra={"session_id": session_id})
            self.metrics.store_errors += 1
            return None

    async def get_session(self, session_id: str) -> Session | None:
        """This server's copy if it has one (freshest), else the store's record."""
        return self.registry.get(session_id) or await self._load(session_id)

    async def _save(self, *sessions: Session) -> None:
        for s in sessions:
            self._dirty.discard(s.id)
        try:
            await self.store.put_many(list(sessions))
        except Exception:  # noqa: BLE001 - the call goes on; the record catches up on the next write
            log.exception("session store write failed")
            self.metrics.store_errors += 1
            self._dirty.update(s.id for s in sessions)

    async def flush(self) -> None:
        """Write every session changed since its last write (turns, history, counts)."""
        sessions = [s for sid in list(self._dirty) if (s := self.registry.get(sid)) is not None]
        self._dirty.clear()
        if sessions:
            await self._save(*sessions)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the writer outlives any one failed write
                log.exception("session store flush failed")
