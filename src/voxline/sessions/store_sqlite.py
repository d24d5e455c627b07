"""SQLite session store: the durable default of `voxline run` (a file under `data_dir`).

sqlite3 blocks, so every call runs on one dedicated thread (which also serializes access to
the single connection); the event loop only awaits. WAL mode keeps a crash from losing
committed records and lets readers run beside the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from voxline.sessions.registry import Session
from voxline.sessions.store import MAX_SCAN, SessionQuery, SessionStore, from_record, to_record

T = TypeVar("T")
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    client_ref TEXT,
    node TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_state ON sessions (state, id);
CREATE INDEX IF NOT EXISTS sessions_client_ref ON sessions (client_ref, id);
"""


class SqliteStore(SessionStore):
    def __init__(self, data_dir: str, filename: str = "sessions.sqlite3") -> None:
        self.path = Path(data_dir) / filename
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-store")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("SqliteStore.start() was not awaited")
        return self._db

    async def put(self, session: Session) -> None:
        await self.put_many([session])

    async def put_many(self, sessions: list[Session]) -> None:
        rows = [(s.id, s.state.value, s.client_ref, s.node, s.created_at, to_record(s)) for s in sessions]
        if rows:
            await self._run(self._write, rows)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO sessions (id, state, client_ref, node, created_at, data) "
                                "VALUES (?, ?, ?, ?, ?, ?)", rows)

    async def get(self, session_id: str) -> Session | None:
        rows = await self._run(self._select, "SELECT data FROM sessions WHERE id = ?", (session_id,))
        return from_record(rows[0][0]) if rows else None

    async def query(self, q: SessionQuery) -> list[Session]:
        where, args = [], []  # type: ignore[var-annotated]
        if q.states:
            where.append(f"state IN ({','.join('?' * len(q.states))})")
            args.extend(q.states)
        for column, op, value in (("created_at", ">=", q.since), ("client_ref", "=", q.client_ref),
                                  ("node", "=", q.node), ("id", "<", q.before)):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        sql = "SELECT data FROM sessions" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(0, min(q.limit, MAX_SCAN)))
        rows = await self._run(self._select, sql, tuple(args))
        return [from_record(row[0]) for row in rows]

    def _select(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, args).fetchall()
