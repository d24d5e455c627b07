"""Sessions' lives on this media server: open, end, listening, drop, resume, expiry.

Each change is told to the agent on `control` and to the page as an event, and written to
the store at once (through `Persistence`). A dropped caller's session stays `disconnected`
and resumable for `resume_grace_s`; `check` (once a second) ends the idle, the expired and
those whose peer never connected.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from voxline.bus.base import Bus
from voxline.bus.messages import (
    Control,
    Event,
    History,
    LogLine,
    SessionEnd,
    SessionEnded,
    SessionStart,
    SetListening,
    publish,
)
from voxline.config import Settings, parse_port_range
from voxline.logs import session_var
from voxline.media.metrics import MediaMetrics
from voxline.media.persistence import Persistence
from voxline.media.resume import ResumeError, new_resume_token, token_matches
from voxline.rtc.peer import MediaPeer, PeerLimits
from voxline.sessions.registry import Session, SessionLimitReached, SessionRegistry, SessionState

log = logging.getLogger(__name__)

def opus_answer_fmtp(s: Settings) -> dict[str, int]:
    """What the answer asks of the caller's Opus encoder (RFC 7587), from `rtc_opus_*`."""
    asked = {"maxplaybackrate": s.rtc_opus_max_playback_rate, "maxaveragebitrate": s.rtc_opus_max_bitrate}
    return {k: v for k, v in asked.items() if v}

@dataclass(frozen=True)
class Issued:
    """What a new session's creator gets once (only their hashes are kept)."""

    resume_token: str
    session_token: str

class SessionLifecycle:
    def __init__(self, settings: Settings, bus: Bus, registry: SessionRegistry, peers: dict[str, MediaPeer],
                 metrics: MediaMetrics, persistence: Persistence, node: str) -> None:
        self.settings = settings
        self.bus = bus
        self.registry = registry
        self.peers = peers
        self.metrics = metrics
        self.store = persistence
        self.node = node
        self._attached: dict[str, float] = {}  # when the current peer was attached
        self.drop_reason: dict[str, str] = {}  # why a disconnected session will end if not resumed
        self.peer_limits = PeerLimits()  # MediaServer.start sets them from the settings

    async def send(self, msg: Control | Event) -> None:
        await publish(self.bus, msg)

    async def open_session(self, offer_sdp: str, client_ref: str | None) -> tuple[Session, str, Issued]:
        """Create a session for a WHIP offer; returns it with the SDP answer and its two secrets."""
        session = self.registry.create(client_ref)
        session.node = self.node
        resume, session.resume_token_hash = new_resume_token()
        secret, session.session_token_hash = new_resume_token()  # same shape: 128 bits, stored hashed
        token = Issued(resume, secret)
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
        self.metrics.created.inc()
        await self.store.save(session)
        await self.send(SessionStart(session_id=session.id, listening=session.listening, client_ref=client_ref))
        ref = f" (replaces client ref {client_ref})" if client_ref else ""
        await self.send(LogLine(session_id=session.id, stage="whip",
                                message=f"Backend session ID issued: {session.id}{ref}"))
        log.info("session created", extra={"client_ref": client_ref})
        return session, answer, token

    async def end_session(self, session_id: str, reason: str) -> Session | None:
        session = self.registry.end(session_id, reason)
        if session is None:
            return None
        session_var.set(session_id)
        peer = self.peers.pop(session_id, None)
        self._attached.pop(session_id, None)
        self.drop_reason.pop(session_id, None)
        session.disconnected_at = None
        if peer is not None:
            await self._close_peer(peer)
        await self.send(SessionEnd(session_id=session_id, reason=reason))
        await self.send(SessionEnded(session_id=session_id, reason=reason))
        self.metrics.session_ended(reason)
        await self.store.save(session)
        log.info("session ended: %s", reason)
        return session

    async def set_listening(self, session: Session, on: bool) -> None:
        session.listening = on
        session.touch()
        await self.send(SetListening(session_id=session.id, listening=on))
        await self.send(LogLine(session_id=session.id, message=f"listening {'on' if on else 'off'}"))

    async def hand_over(self, session: Session) -> None:
        """An agent picked the session up without its history: send it (or say it has ended)."""
        if session.ended:
            await self.send(SessionEnd(session_id=session.id, reason=session.end_reason))
        else:
            await self.send(History(session_id=session.id, messages=session.history, turn=session.turns,
                                    listening=session.listening))

    async def check(self, now: float) -> None:
        """End idle sessions, expired drops and peers that never connected."""
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

    # -- drops and resumes ------------------------------------------------------------------
    def _new_peer(self, session: Session) -> MediaPeer:
        """A peer whose close callback knows which peer closed (a resumed session has a newer one)."""
        peer: MediaPeer | None = None

        async def closed(_: str, reason: str) -> None:
            if peer is not None:
                await self._peer_closed(peer, reason)

        s = self.settings
        peer = MediaPeer(session, self.bus, closed, s.rtc_jitter_prefetch, s.rtc_send_silence,
                         parse_port_range(s.rtc_port_range), s.rtc_announced_address, self.peer_limits,
                         opus_answer_fmtp(s))
        return peer

    async def _close_peer(self, peer: MediaPeer) -> None:
        """Close a peer that carried a call, keeping its counts for /metrics' counters."""
        await peer.close()
        self.metrics.retired.update(peer.counts())

    async def _peer_closed(self, peer: MediaPeer, reason: str) -> None:
        """The caller's connection failed or closed without DELETE: resumable until the grace ends."""
        await self.disconnect(peer, reason)

    async def disconnect(self, peer: MediaPeer, reason: str) -> int:
        """Drop this peer's call resumably (1), or end it when resuming is off (0)."""
        session = peer.session
        if self.peers.get(session.id) is not peer or session.ended:
            return 0  # replaced by a resumed peer, or already ended
        grace = self.settings.resume_grace_s
        if grace <= 0:
            await self.end_session(session.id, reason)
            return 0
        session_var.set(session.id)
        self.peers.pop(session.id, None)
        self._attached.pop(session.id, None)
        await self._close_peer(peer)
        session.state = SessionState.DISCONNECTED
        session.disconnected_at = time.time()
        self.drop_reason[session.id] = reason
        self.metrics.disconnected += 1
        log.info("caller disconnected (%s): resumable for %.0f s", reason, grace)
        await self.send(LogLine(session_id=session.id, level="warning",
                                message=f"caller disconnected ({reason}); resumable for {grace:.0f} s"))
        await self.store.save(session)
        return 1

    async def _expire(self, session: Session) -> None:
        """A disconnected session nobody resumed in time: end it, unless another node took it."""
        stored = await self.store.load(session.id)
        if stored is not None and stored.node != self.node and not stored.ended:
            self.registry.end(session.id, "resumed on another media server")  # local copy only
            self.drop_reason.pop(session.id, None)
            return
        await self.end_session(session.id, self.drop_reason.pop(session.id, "caller disconnected"))

    async def resume_session(self, session_id: str, token: str, offer_sdp: str) -> tuple[Session, str]:
        """Attach a new peer to a live or disconnected session whose resume token matches."""
        session = self.registry.get(session_id)
        adopted = session is None or session.ended
        if adopted:
            session = await self.store.load(session_id)  # another node's, or from before a restart
        if session is None or not token_matches(session.resume_token_hash, token):
            raise ResumeError(404, "resume_refused", "no resumable session with this ID and resume token")
        if session.ended:
            raise ResumeError(409, "session_ended", f"session {session_id} has ended ({session.end_reason}): start a new one")
        now = time.time()
        grace = self.settings.resume_grace_s
        if adopted and session.state is not SessionState.DISCONNECTED:
            raise ResumeError(409, "session_active", "the session is live on another media server; retry shortly")
        if session.state is SessionState.DISCONNECTED and now - (session.disconnected_at or now) > grace:
            if not adopted:
                await self._expire(session)
            raise ResumeError(409, "resume_expired", f"the {grace:.0f} s resume grace period is over")
        if adopted and self.registry.live_count() >= self.settings.max_sessions:  # a resume is a session here too
            raise SessionLimitReached(f"{self.settings.max_sessions} sessions are live")
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
        self.drop_reason.pop(session_id, None)
        session.state = SessionState.CONNECTED
        session.disconnected_at = None
        session.node = self.node
        session.touch(now)
        if old is not None:
            await self._close_peer(old)
        self.metrics.resumed.inc()
        # An agent that still has the conversation just carries on; one that lost it (restart,
        # failover) sees a control for an unknown session and asks for the history.
        await self.send(SetListening(session_id=session_id, listening=session.listening))
        await self.send(LogLine(session_id=session_id, stage="whip",
                                message=f"Session resumed: {session_id} ({len(session.history)} messages of history kept)"))
        log.info("session resumed", extra={"client_ref": session.client_ref})
        await self.store.save(session)
        return session, answer
