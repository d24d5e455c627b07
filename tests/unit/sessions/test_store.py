"""The session store contract, run against all three back-ends (Redis: a real redis-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voxline.sessions.ids import new_session_id
from voxline.sessions.registry import Session, SessionState
from voxline.sessions.store import LIVE_STATES, SessionQuery, SessionStore, create_store, from_record, to_record


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    kind = request.param
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""
    s = create_store(kind, str(tmp_path), url)
    await s.start()
    if kind == "redis":
        await s.redis.flushdb()  # type: ignore[attr-defined]
    yield s
    await s.close()


def make(ms: int, **fields: object) -> Session:
    session = Session(id=new_session_id(ms), created_at=ms / 1000, **fields)  # type: ignore[arg-type]
    return session


async def test_put_get_roundtrip_keeps_everything(store: SessionStore) -> None:
    s = make(1_700_000_000_000, client_ref="tmp-1", state=SessionState.CONNECTED, turns=2, interruptions=1,
             node="n1", resume_token_hash="ab" * 32)
    s.history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    s.turn_metrics = [{"turn": 1, "stt_ms": 80.5, "speculative": True}]
    await store.put(s)
    got = await store.get(s.id)
    assert got is not None and got == s
    assert await store.get(new_session_id()) is None
    s.state, s.end_reason = SessionState.ENDED, "done"
    await store.put(s)  # replaces
    assert (await store.get(s.id)).end_reason == "done"  # type: ignore[union-attr]


async def test_query_filters_orders_and_pages(store: SessionStore) -> None:
    base = 1_700_000_000_000
    sessions = [make(base + i * 1000, client_ref=f"c{i % 2}",
                     state=SessionState.ENDED if i % 3 == 0 else SessionState.CONNECTED, node=f"n{i % 2}")
                for i in range(10)]
    await store.put_many(sessions)
    newest_first = sorted(sessions, key=lambda s: s.id, reverse=True)
    assert [s.id for s in await store.query(SessionQuery())] == [s.id for s in newest_first]
    ended = await store.query(SessionQuery(states=("ended",)))
    assert {s.id for s in ended} == {s.id for s in sessions if s.ended}
    assert all(s.client_ref == "c1" for s in await store.query(SessionQuery(client_ref="c1")))
    assert len(await store.query(SessionQuery(client_ref="c1"))) == 5
    assert len(await store.query(SessionQuery(since=(base + 5000) / 1000))) == 5
    assert len(await store.query(SessionQuery(states=LIVE_STATES, node="n0"))) == 3
    first = await store.query(SessionQuery(limit=4))
    second = await store.query(SessionQuery(limit=4, before=first[-1].id))
    assert [s.id for s in first + second] == [s.id for s in newest_first[:8]]


def test_records_hide_nothing_from_the_store_but_to_json_hides_the_token() -> None:
    s = make(1_700_000_000_000, resume_token_hash="f" * 64)
    assert from_record(to_record(s)).resume_token_hash == "f" * 64
    assert "resume_token_hash" not in s.to_json()
    assert from_record('{"id": "x", "state": "ended", "future_field": 1}').id == "x"  # newer records load


async def test_sqlite_store_survives_a_reopen(tmp_path: Path) -> None:
    store = create_store("sqlite", str(tmp_path))
    await store.start()
    s = make(1_700_000_000_000, state=SessionState.CONNECTED)
    await store.put(s)
    await store.close()
    again = create_store("sqlite", str(tmp_path))
    await again.start()
    assert await again.get(s.id) == s
    await again.close()


def test_unknown_store_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown session store"):
        create_store("mongo")


async def test_redis_records_of_ended_sessions_expire_and_live_ones_stay(redis_url: str) -> None:
    """Redis runs with noeviction: kept records would fill it, then every write would fail."""
    store = create_store("redis", redis_url=redis_url, ended_ttl_s=3600)
    await store.start()
    try:
        redis = store.redis  # type: ignore[attr-defined]
        live = Session(id=new_session_id(), state=SessionState.CONNECTED)
        ended = Session(id=new_session_id(), state=SessionState.ENDED, end_reason="ended by the client (DELETE)")
        await store.put_many([live, ended])
        assert await redis.ttl(store._key(live.id)) == -1  # type: ignore[attr-defined]  # no expiry while live
        assert 3500 < await redis.ttl(store._key(ended.id)) <= 3600  # type: ignore[attr-defined]
        old = Session(id=new_session_id(), state=SessionState.ENDED, created_at=1.0)  # index entry far past the TTL
        await store.put(old)
        assert await redis.zscore(store.index, old.id) is None  # type: ignore[attr-defined]
        assert await redis.zscore(store.index, live.id) is not None  # type: ignore[attr-defined]
    finally:
        await store.close()
