"""Redis session store, for several media servers sharing one view of the sessions.

Each record is a JSON string at `{prefix}session:{id}`; a sorted set `{prefix}sessions`
(score = created_at) indexes them by time. Queries walk the index newest first in pages and
filter in Python: this is an admin listing, bounded by MAX_SCAN, not a hot path. An ended
session's record expires `ended_ttl_s` after its last write (Redis runs with `noeviction`, so
kept records would fill it and then every write would fail); the index forgets entries a day
older than that, and listings skip entries whose record has gone.
"""

from __future__ import annotations

import time

from voxline.sessions.registry import Session
from voxline.sessions.store import MAX_SCAN, SessionQuery, SessionStore, from_record, to_record

PAGE = 200
INDEX_MARGIN_S = 86400.0  # index entries live this much longer than the records (a long call ended late)


class RedisStore(SessionStore):
    def __init__(self, url: str, prefix: str = "voxline:", ended_ttl_s: float = 0) -> None:
        import redis.asyncio as aioredis  # optional dependency: only needed for this store

        self.url = url
        self.prefix = prefix
        self.redis = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.index = f"{prefix}sessions"
        self.ended_ttl_s = ended_ttl_s

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    async def start(self) -> None:
        await self.redis.ping()  # fail at start-up, not on the first call

    async def close(self) -> None:
        await self.redis.aclose()

    async def put(self, session: Session) -> None:
        await self.put_many([session])

    async def put_many(self, sessions: list[Session]) -> None:
        if not sessions:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            ttl = int(self.ended_ttl_s) if self.ended_ttl_s > 0 else None
            for s in sessions:
                pipe.set(self._key(s.id), to_record(s), ex=ttl if s.ended and ttl else None)
                pipe.zadd(self.index, {s.id: s.created_at})
            if ttl:
                pipe.zremrangebyscore(self.index, "-inf", time.time() - ttl - INDEX_MARGIN_S)
            await pipe.execute()

    async def get(self, session_id: str) -> Session | None:
        raw = await self.redis.get(self._key(session_id))
        return from_record(raw) if raw is not None else None

    async def query(self, q: SessionQuery) -> list[Session]:
        limit = max(0, min(q.limit, MAX_SCAN))
        low = q.since if q.since is not None else "-inf"
        out: list[Session] = []
        start = scanned = 0
        while len(out) < limit and scanned < MAX_SCAN:
            ids = await self.redis.zrevrangebyscore(self.index, "+inf", low, start=start, num=PAGE)
            if not ids:
                break
            start += len(ids)
            scanned += len(ids)
            raws = await self.redis.mget([self._key(i.decode() if isinstance(i, bytes) else str(i)) for i in ids])
            for raw in raws:
                if raw is None:
                    continue
                session = from_record(raw)
                if q.matches(session):
                    out.append(session)
        # The index orders by created_at; the contract orders by ID (ties and clock steps).
        out.sort(key=lambda s: s.id, reverse=True)
        return out[:limit]
