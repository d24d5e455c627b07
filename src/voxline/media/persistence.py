"""The media server's session records in the store: writes, restart recovery and sweeps.

Writes are batched: a change marks the session dirty and the writer task stores every dirty
session every `FLUSH_EVERY_S`; lifecycle changes (created, dropped, resumed, ended) are
written at once. A store that fails never stops a call: it is counted in /metrics and the
record catches up on the next write.
"""

from __future__ import annotations

import asyncio
import logging
import time

from voxline.media.metrics import MediaMetrics
from voxline.sessions.registry import Session, SessionRegistry, SessionState
from voxline.sessions.store import LIVE_STATES, SessionQuery, SessionStore

log = logging.getLogger(__name__)
FLUSH_EVERY_S = 0.5  # turn and history changes reach the store at most this late
SWEEP_EVERY_S = 10.0


class Persistence:
    def __init__(self, store: SessionStore, registry: SessionRegistry, metrics: MediaMetrics, node: str,
                 resume_grace_s: float) -> None:
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.node = node
        self.resume_grace_s = resume_grace_s
        self._dirty: set[str] = set()  # sessions changed since their last store write

    def changed(self, session_id: str) -> None:
        self._dirty.add(session_id)

    async def recover(self) -> list[Session]:
        """Sessions this node held when it stopped without cleanup (kill -9, crash, OOM).

        They become `disconnected` (adopted into the registry): their callers may resume
        within the grace period; the caller ends the rest with reason "server restart".
        """
        try:
            orphans = await self.store.query(SessionQuery(states=LIVE_STATES, node=self.node))
        except Exception:  # noqa: BLE001 - a broken store must not keep the server down
            log.exception("could not read the session store at start-up")
            self.metrics.store_errors.inc()
            return []
        now = time.time()
        for session in orphans:
            session.state = SessionState.DISCONNECTED
            session.disconnected_at = now
            session.touch(now)
            self.registry.adopt(session)
        if orphans:
            log.warning("%d sessions were live when this server last stopped: resumable for %.0f s",
                        len(orphans), self.resume_grace_s)
            await self.save(*orphans)
        return orphans

    async def sweep(self, now: float) -> None:
        """End disconnected sessions of other nodes that nobody resumed (their node is gone)."""
        try:
            stale = await self.store.query(SessionQuery(states=(SessionState.DISCONNECTED.value,), limit=500))
        except Exception:  # noqa: BLE001
            self.metrics.store_errors.inc()
            return
        grace = max(self.resume_grace_s, 0) + SWEEP_EVERY_S
        for s in stale:
            if s.node != self.node and self.registry.get(s.id) is None and now - (s.disconnected_at or now) > grace:
                s.state, s.ended_at, s.end_reason = SessionState.ENDED, now, "media server lost"
                s.listening = False
                await self.save(s)

    async def load(self, session_id: str) -> Session | None:
        try:
            return await self.store.get(session_id)
        except Exception:  # noqa: BLE001
            log.exception("session store read failed", extra={"session_id": session_id})
            self.metrics.store_errors.inc()
            return None

    async def save(self, *sessions: Session) -> None:
        for s in sessions:
            self._dirty.discard(s.id)
        try:
            await self.store.put_many(list(sessions))
        except Exception:  # noqa: BLE001 - the call goes on; the record catches up on the next write
            log.exception("session store write failed")
            self.metrics.store_errors.inc()
            self._dirty.update(s.id for s in sessions)

    async def flush(self) -> None:
        """Write every session changed since its last write (turns, history, counts)."""
        sessions = [s for sid in list(self._dirty) if (s := self.registry.get(sid)) is not None]
        self._dirty.clear()
        if sessions:
            await self.save(*sessions)

    async def run_writer(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the writer outlives any one failed write
                log.exception("session store flush failed")
