"""Redis session store, for several media servers sharing one view of the sessions.

Each record is a JSON string at `{prefix}session:{id}`; a sorted set `{prefix}sessions`
(score = created_at) indexes them by time. Queries walk the index newest first in pages and
filter in Python: this is an admin listing, bounded by MAX_SCAN, not a hot path.
"""

from __future__ import annotations

from voxline.sessions.registry import Session
from voxline.sessions.store import MAX_SCAN, SessionQuery, SessionStore, from_record, to_record

PAGE = 200


class RedisStore(SessionStore):
    def __init__(self, url: str, prefix: str = "voxline:") -> None:
        import redis.asyncio as aioredis  # optional dependency: only needed for this store

        self.url = url
        self.prefix = prefix
        self.redis = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.index = f"{prefix}sessions"

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
            for s in sessions:
                pipe.set(self._key(s.id), to_record(s))
                pipe.zadd(self.index, {s.id: s.created_at})
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
