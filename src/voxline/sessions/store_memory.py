"""In-memory session store: the same contract as the durable ones, for tests and `media` runs
that need no persistence. Copies records in and out so callers never share objects with it."""

from __future__ import annotations

from voxline.sessions.registry import Session
from voxline.sessions.store import MAX_SCAN, SessionQuery, SessionStore, from_record, to_record


class MemoryStore(SessionStore):
    def __init__(self) -> None:
        self._records: dict[str, str] = {}

    async def put(self, session: Session) -> None:
        self._records[session.id] = to_record(session)

    async def get(self, session_id: str) -> Session | None:
        raw = self._records.get(session_id)
        return from_record(raw) if raw is not None else None

    async def query(self, q: SessionQuery) -> list[Session]:
        out: list[Session] = []
        for sid in sorted(self._records, reverse=True):
            session = from_record(self._records[sid])
            if q.matches(session):
                out.append(session)
                if len(out) >= min(q.limit, MAX_SCAN):
                    break
        return out
