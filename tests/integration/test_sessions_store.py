"""The media server writes sessions through to its store (SQLite, Redis): on create and end at
once, turns and history at turn boundaries (debounced), never per audio frame; two media
servers sharing one Redis store see each other's sessions and can take over a dropped call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.integration.test_recovery import call, get_json, own, play_a_turn, wait_for
from voxline.bench.system import free_port
from voxline.bus.memory import MemoryBus
from voxline.config import Settings
from voxline.media.app import create_app
from voxline.media.server import MediaServer
from voxline.sessions.registry import Session
from voxline.sessions.store import SessionStore, create_store
from voxline.sessions.store_memory import MemoryStore

SETTINGS = dict(max_sessions=4, session_create_rate_per_min=1000)




@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Node:
    """One media server (own bus, own HTTP port) on a given store."""

    def __init__(self, settings: Settings, store: SessionStore) -> None:
        self.bus = MemoryBus()
        self.media = MediaServer(settings, self.bus, store)
        self.settings = settings
        self.url = ""
        self.runner: web.AppRunner | None = None

    async def start(self) -> Node:
        await self.bus.start()
        await self.media.start()
        port = free_port()
        self.runner = web.AppRunner(create_app(self.media, self.settings), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        await self.media.stop()
        await self.bus.close()


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    async def put_many(self, sessions: list[Session]) -> None:
        self.writes += 1
        await super().put_many(sessions)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_sessions_are_written_through(kind: str, tmp_path: Path, request: pytest.FixtureRequest, http) -> None:
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""
    store = create_store(kind, str(tmp_path), url)
    node = await Node(Settings(**SETTINGS, node_id=f"n-{kind}"), store).start()
    try:
        if kind == "redis":
            await store.redis.flushdb()  # type: ignore[attr-defined]
        resp, pc = await call(http, node.url, **{"X-Session-ID": "tmp-store"})
        sid = resp.headers["X-Session-ID"]
        record = await store.get(sid)  # written before the 201
        assert record is not None and record.state.value == "connected" and record.client_ref == "tmp-store"
        assert record.node == f"n-{kind}" and len(record.resume_token_hash) == 64
        await play_a_turn(node.media, sid, "One.", "Two.")

        async def has_turn() -> bool:  # the debounced writer, no explicit flush
            stored = await store.get(sid)
            return stored is not None and stored.turns == 1 and len(stored.history) == 2

        await wait_for(has_turn, "the turn did not reach the store", timeout=5)
        assert len(record.session_token_hash) == 64
        async with http.delete(f"{node.url}/whip/{sid}", headers=own(resp)) as r:
            assert r.status == 200
        ended = await store.get(sid)
        assert ended is not None and ended.state.value == "ended" and ended.ended_at
        listing = await get_json(http, f"{node.url}/sessions")
        assert listing["sessions"][0]["session_id"] == sid
        assert (await get_json(http, f"{node.url}/sessions/{sid}", own(resp)))["history"][1]["content"] == "Two."
        await pc.close()
    finally:
        await node.stop()


async def test_audio_frames_do_not_write_to_the_store(http) -> None:
    from voxline.client.audio import WavSource
    from voxline.client.whip import WhipClient

    store = CountingStore()
    node = await Node(Settings(**SETTINGS), store).start()
    client = WhipClient(node.url)
    try:
        session = await client.connect(WavSource())
        await wait_for(lambda: node.media.peers[session.session_id].frames_in > 0, "no audio arrived")
        before, frames = store.writes, node.media.peers[session.session_id].frames_in
        await wait_for(lambda: node.media.peers[session.session_id].frames_in >= frames + 50, "50 more frames did not arrive")
        assert store.writes - before <= 1  # at most the connected-state change, never per frame
    finally:
        await client.close()
        await node.stop()


async def test_two_media_servers_share_a_redis_store_and_hand_over_a_dropped_call(redis_url: str, http) -> None:
    stores = [create_store("redis", redis_url=redis_url) for _ in range(2)]
    a = await Node(Settings(**SETTINGS, node_id="node-a", resume_grace_s=2.0), stores[0]).start()
    b = await Node(Settings(**SETTINGS, node_id="node-b", resume_grace_s=2.0), stores[1]).start()
    try:
        await stores[0].redis.flushdb()  # type: ignore[attr-defined]
        resp, pc = await call(http, a.url)
        sid, token = resp.headers["X-Session-ID"], resp.headers["X-Resume-Token"]
        await play_a_turn(a.media, sid, "Remember the number seven.", "Seven, noted.")
        await a.media.flush()
        seen_on_b = await get_json(http, f"{b.url}/sessions/{sid}", own(resp))
        assert seen_on_b["state"] == "connected" and len(seen_on_b["history"]) == 2
        # While A still holds the call, B refuses to take it.
        busy, pc_busy = await call(http, b.url, **{"X-Session-ID": sid, "X-Resume-Token": token})
        assert busy.status == 409 and (await busy.json())["error"] == "session_active"

        await pc.close()  # the caller drops; A marks it disconnected in the shared store
        await wait_for(lambda: a.media.registry.get(sid).state.value == "disconnected", "A did not notice")
        moved, pc2 = await call(http, b.url, **{"X-Session-ID": sid, "X-Resume-Token": token})
        assert moved.status == 201 and moved.headers["X-Session-ID"] == sid
        state = await get_json(http, f"{b.url}/sessions/{sid}", own(resp))  # the secret A issued opens it on B
        assert state["state"] == "connected" and state["node"] == "node-b" and len(state["history"]) == 2
        # A's grace period runs out: it lets go of its copy without ending B's session.
        await wait_for(lambda: a.media.registry.get(sid).ended, "A kept its copy", timeout=10)
        assert (await stores[1].get(sid)).state.value == "connected"  # type: ignore[union-attr]
        for p in (pc_busy, pc2):
            await p.close()
    finally:
        await a.stop()
        await b.stop()


async def test_a_resume_on_a_full_media_server_is_refused_and_counts_against_max_sessions(redis_url: str, http) -> None:
    """#14.4: adopting another node's dropped call is a session here too: a full node answers
    503, and the call stays resumable where there is room."""
    stores = [create_store("redis", redis_url=redis_url) for _ in range(2)]
    a = await Node(Settings(**SETTINGS, node_id="cap-a", resume_grace_s=10), stores[0]).start()
    b = await Node(Settings(max_sessions=1, session_create_rate_per_min=1000, node_id="cap-b", resume_grace_s=10),
                   stores[1]).start()
    pcs = []
    try:
        await stores[0].redis.flushdb()  # type: ignore[attr-defined]
        resp, pc = await call(http, a.url)
        sid, token = resp.headers["X-Session-ID"], resp.headers["X-Resume-Token"]
        other, pc_other = await call(http, b.url)  # B's one slot is taken by its own caller
        pcs += [pc, pc_other]
        assert other.status == 201
        await pc.close()  # the caller drops from A
        await wait_for(lambda: a.media.registry.get(sid).state.value == "disconnected", "A did not notice")
        refused, pc_refused = await call(http, b.url, **{"X-Session-ID": sid, "X-Resume-Token": token})
        pcs.append(pc_refused)
        assert refused.status == 503 and (await refused.json())["error"] == "session_limit"
        assert b.media.registry.live_count() == 1
        back, pc_back = await call(http, a.url, **{"X-Session-ID": sid, "X-Resume-Token": token})
        pcs.append(pc_back)
        assert back.status == 201 and back.headers["X-Session-ID"] == sid  # still resumable where there is room
    finally:
        for p in pcs:
            await p.close()
        await a.stop()
        await b.stop()
