"""The per-session record and the in-process registry that owns it.

Pure bookkeeping (no sockets, no models): the media server and the agent both use it, and
tests drive it directly. Time is passed in or read from `time.time()`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from voxline.sessions.ids import new_session_id


class SessionState(str, Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # the peer dropped without DELETE: resumable for a grace period
    ENDED = "ended"


class SessionLimitReached(Exception):
    """The server holds `max_sessions` live sessions already."""


@dataclass
class Session:
    id: str
    client_ref: str | None = None
    state: SessionState = SessionState.CONNECTING
    listening: bool = False
    conversation_state: str = "idle"
    created_at: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.time)
    ended_at: float | None = None
    end_reason: str | None = None
    turns: int = 0
    interruptions: int = 0
    errors: int = 0
    turn_metrics: list[dict[str, Any]] = field(default_factory=list)
    # What the caller said and heard, kept by the media server so that an agent taking the
    # session over (failover, restart) can go on with the conversation.
    history: list[dict[str, str]] = field(default_factory=list)
    disconnected_at: float | None = None
    node: str = ""  # the media server that holds the peer (shared stores)
    # sha256 of the resume token and of the session secret given to the caller once (never
    # shown by to_json): the first re-attaches a dropped call, the second opens its routes.
    resume_token_hash: str = ""
    session_token_hash: str = ""

    @property
    def ended(self) -> bool:
        return self.state is SessionState.ENDED

    def touch(self, now: float | None = None) -> None:
        self.last_activity = time.time() if now is None else now

    def duration_s(self, now: float | None = None) -> float:
        end = self.ended_at if self.ended_at is not None else (time.time() if now is None else now)
        return round(end - self.created_at, 3)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["session_id"] = out.pop("id")
        out.pop("resume_token_hash", None)
        out.pop("session_token_hash", None)
        out["state"] = self.state.value
        out["duration_s"] = self.duration_s()
        return out


class SessionRegistry:
    """Live and recently ended sessions of this process, with a cap on live ones."""

    def __init__(self, max_sessions: int, keep_ended: int = 200) -> None:
        self.max_sessions = max_sessions
        self.keep_ended = keep_ended
        self._sessions: dict[str, Session] = {}

    def create(self, client_ref: str | None = None) -> Session:
        if self.live_count() >= self.max_sessions:
            raise SessionLimitReached(f"{self.max_sessions} sessions are live")
        session = Session(id=new_session_id(), client_ref=client_ref)
        self._sessions[session.id] = session
        self._trim_ended()
        return session

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def adopt(self, session: Session) -> Session:
        """Take in a session loaded from the store (restart recovery, resume on this node)."""
        self._sessions[session.id] = session
        self._trim_ended()
        return session

    def end(self, session_id: str, reason: str, now: float | None = None) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None or session.ended:
            return None
        session.state = SessionState.ENDED
        session.listening = False
        session.ended_at = time.time() if now is None else now
        session.end_reason = reason
        return session

    def live(self) -> Iterator[Session]:
        return (s for s in list(self._sessions.values()) if not s.ended)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def live_count(self) -> int:
        return sum(1 for _ in self.live())

    def idle(self, timeout_s: float, now: float | None = None) -> list[Session]:
        now = time.time() if now is None else now
        return [s for s in self.live() if now - s.last_activity > timeout_s]

    def _trim_ended(self) -> None:
        ended = [s for s in self._sessions.values() if s.ended]
        for s in sorted(ended, key=lambda s: s.ended_at or 0)[: max(0, len(ended) - self.keep_ended)]:
            del self._sessions[s.id]
