"""Session store: one interface, three back-ends (memory, SQLite, Redis).

The registry holds the sessions this process serves right now; the store outlives the
process, so that a restarted media server can list what happened (and mark what was live as
ended), a dropped caller can resume, and `GET /sessions` can list and aggregate history.
Records are `Session` objects serialized to JSON; queries come newest first (by ID, which
starts with the creation time in ms, fixed width until the year 2286).
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from voxline.sessions.registry import Session, SessionState

LIVE_STATES = (SessionState.CONNECTING.value, SessionState.CONNECTED.value, SessionState.DISCONNECTED.value)
MAX_SCAN = 10_000  # a query never reads more records than this


@dataclass(frozen=True)
class SessionQuery:
    """Filters for `SessionStore.query`; `before` is a cursor: only IDs sorting before it."""

    states: tuple[str, ...] = ()
    since: float | None = None  # created_at >= since (unix seconds)
    client_ref: str | None = None
    node: str | None = None
    before: str | None = None
    limit: int = MAX_SCAN

    def matches(self, s: Session) -> bool:
        return ((not self.states or s.state.value in self.states)
                and (self.since is None or s.created_at >= self.since)
                and (self.client_ref is None or s.client_ref == self.client_ref)
                and (self.node is None or s.node == self.node)
                and (self.before is None or s.id < self.before))


def to_record(session: Session) -> str:
    """The session as a JSON document, token hash included (it never leaves the server)."""
    out = dataclasses.asdict(session)
    out["state"] = session.state.value
    return json.dumps(out, separators=(",", ":"))


def from_record(raw: str | bytes) -> Session:
    data: dict[str, Any] = json.loads(raw)
    known = {f.name for f in dataclasses.fields(Session)}
    data = {k: v for k, v in data.items() if k in known}  # records of newer versions load too
    data["state"] = SessionState(data.get("state", "ended"))
    return Session(**data)


class SessionStore(ABC):
    """Durable session records. Every method is async and never blocks the event loop."""

    async def start(self) -> None:  # noqa: B027 - optional: a store without files or connections keeps it
        """Open files or connections; create tables."""

    async def close(self) -> None:  # noqa: B027 - optional, as start
        """Flush and release resources."""

    @abstractmethod
    async def put(self, session: Session) -> None:
        """Insert or replace the session's record."""

    async def put_many(self, sessions: list[Session]) -> None:
        for session in sessions:
            await self.put(session)

    @abstractmethod
    async def get(self, session_id: str) -> Session | None: ...

    @abstractmethod
    async def query(self, q: SessionQuery) -> list[Session]:
        """Matching sessions, newest first, at most `q.limit` (and never more than MAX_SCAN)."""


def create_store(kind: str, data_dir: str = "./data", redis_url: str = "", ended_ttl_s: float = 0) -> SessionStore:
    """The store named by `Settings.session_store`: memory | sqlite | redis."""
    if kind == "memory":
        from voxline.sessions.store_memory import MemoryStore
        return MemoryStore()
    if kind == "sqlite":
        from voxline.sessions.store_sqlite import SqliteStore
        return SqliteStore(data_dir)
    if kind == "redis":
        from voxline.sessions.store_redis import RedisStore
        return RedisStore(redis_url or "redis://127.0.0.1:6379/0", ended_ttl_s=ended_ttl_s)
    raise ValueError(f"unknown session store {kind!r}: use memory, sqlite or redis")
