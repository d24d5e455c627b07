"""Recovery: a dropped caller resumes its session (same ID, same history); a media server that
restarts (kill -9, real subprocess) lists what was live as ended with reason "server restart".

No models: the agent's side of a turn is played by publishing its events on the bus.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from metrics_text import parse_metrics
from voxline.bench.system import free_port
from voxline.bus.codec import decode_json
from voxline.bus.memory import MemoryBus
from voxline.bus.topics import Topic
from voxline.config import Settings
from voxline.media.server import MediaServer
from voxline.rtc.connection import new_peer_connection
from voxline.sessions.ids import new_session_id
from voxline.sessions.store_sqlite import SqliteStore


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[aiohttp.ClientResponse, Any]:
    """A real aiortc caller: offer, answer, and wait until the connection is up (201 only)."""
    pc = new_peer_connection()
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    resp = await http.post(f"{url}/whip", data=pc.localDescription.sdp,
                           headers={"Content-Type": "application/sdp", **headers})
    body = await resp.text()
    if resp.status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        await wait_for(lambda: pc.connectionState == "connected", "the caller did not connect")
    return resp, pc


async def wait_for(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while not (await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()):
        assert time.time() < deadline, what
        await asyncio.sleep(0.1)


async def play_a_turn(media: MediaServer, sid: str, user: str, reply: str, turn: int = 1) -> None:
    """What an agent publishes for one turn; the media server keeps history and metrics from it."""
    await media.publish_event(sid, "transcript.final", text=user, turn=turn)
    await media.publish_event(sid, "agent.text", text=reply, final=True, turn=turn)
    await media.publish_event(sid, "turn.metrics", turn=turn, metrics={"stt_ms": 90.0, "server_voice_to_voice_ms": 700.0})
    await wait_for(lambda: media.registry.get(sid).turns >= turn, "the turn was not relayed")


def own(resp: aiohttp.ClientResponse) -> dict[str, str]:
    """The headers that open a session's routes: its secret, from the answer that created it."""
    return {"X-Session-Token": resp.headers["X-Session-Token"]}


async def get_json(http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_a_dropped_caller_resumes_with_the_same_id_and_history(media_server, http) -> None:
    url, media = media_server.url, media_server.media
    controls: list[dict[str, Any]] = []
    sub = await media.bus.subscribe([Topic.CONTROL])

    async def collect() -> None:
        async for message in sub:
            controls.append(decode_json(message.value))

    collector = asyncio.create_task(collect())
    resp, pc1 = await call(http, url, **{"X-Session-ID": "tmp-first"})
    assert resp.status == 201
    sid, location, token = resp.headers["X-Session-ID"], resp.headers["Location"], resp.headers["X-Resume-Token"]
    mine = own(resp)
    assert len(token) >= 22  # 128 bits, URL-safe base64
    assert token not in str(media.registry.get(sid).to_json()) and media.registry.get(sid).resume_token_hash != token
    await play_a_turn(media, sid, "What is the capital of France?", "Paris.")

    await pc1.close()  # the network drops: no DELETE
    await wait_for(lambda: media.registry.get(sid).state.value == "disconnected", "the drop was not noticed")
    state = await get_json(http, f"{url}/sessions/{sid}", mine)
    assert state["state"] == "disconnected" and state["disconnected_at"]

    # Wrong token, or no such session: 404; a token with a malformed ID: 400. Never a 500.
    bad, pc_bad = await call(http, url, **{"X-Session-ID": sid, "X-Resume-Token": "A" * 22})
    assert bad.status == 404 and (await bad.json())["error"] == "resume_refused"
    unknown, pc_unknown = await call(http, url, **{"X-Session-ID": new_session_id(), "X-Resume-Token": token})
    assert unknown.status == 404
    malformed, pc_malformed = await call(http, url, **{"X-Session-ID": "tmp-x", "X-Resume-Token": token})
    assert malformed.status == 400 and (await malformed.json())["error"] == "malformed_session_id"

    controls.clear()
    resumed, pc2 = await call(http, url, **{"X-Session-ID": sid, "X-Resume-Token": token})
    assert resumed.status == 201, await resumed.text()
    assert resumed.headers["X-Session-ID"] == sid and resumed.headers["Location"] == location
    assert "X-Resume-Token" not in resumed.headers  # the original token stays the session's
    assert "X-Session-Token" not in resumed.headers  # and so does its secret: it still opens the session
    state = await get_json(http, f"{url}/sessions/{sid}", mine)
    assert state["state"] == "connected" and state["client_ref"] == "tmp-first"
    assert state["history"] == [{"role": "user", "content": "What is the capital of France?"},
                                {"role": "assistant", "content": "Paris."}]
    assert state["turns"] == 1 and state["turn_metrics"][0]["stt_ms"] == 90.0
    await wait_for(lambda: any(c["type"] == "listening" for c in controls), "the agent was not told")
    assert not any(c["type"] in ("session.start", "session.end") for c in controls)  # the agent keeps the conversation
    await wait_for(lambda: media.peers[sid].pc.connectionState == "connected", "the resumed peer did not connect")

    await play_a_turn(media, sid, "And of Spain?", "Madrid.", turn=2)
    assert len((await get_json(http, f"{url}/sessions/{sid}", mine))["history"]) == 4

    # DELETE ends it for good: no resume after that.
    async with http.delete(url + location, headers=mine) as deleted:
        assert deleted.status == 200
    again, pc3 = await call(http, url, **{"X-Session-ID": sid, "X-Resume-Token": token})
    assert again.status == 409 and (await again.json())["error"] == "session_ended"
    metrics = parse_metrics(await (await http.get(f"{url}/metrics")).text())
    assert metrics["voxline_sessions_resumed_total"] == 1
    for pc in (pc1, pc2, pc3, pc_bad, pc_unknown, pc_malformed):
        await pc.close()
    collector.cancel()
    await sub.close()


@pytest.mark.parametrize("media_server", [{"resume_grace_s": 1.0}], indirect=True)
async def test_a_drop_not_resumed_in_time_ends(media_server, http) -> None:
    url, media = media_server.url, media_server.media
    resp, pc = await call(http, url)
    sid, token, mine = resp.headers["X-Session-ID"], resp.headers["X-Resume-Token"], own(resp)
    await pc.close()
    await wait_for(lambda: media.registry.get(sid).state.value == "ended", "the grace period did not end it")
    state = await get_json(http, f"{url}/sessions/{sid}", mine)
    assert state["end_reason"].startswith("peer connection")
    late, pc2 = await call(http, url, **{"X-Session-ID": sid, "X-Resume-Token": token})
    assert late.status == 409 and set(await late.json()) == {"error", "detail"}
    await pc2.close()


async def test_a_restarted_server_lets_callers_resume_with_history(tmp_path: Path, http) -> None:
    """Crash (no clean stop) and restart on the same SQLite file: the session is resumable."""
    from tests.integration.conftest import start_server

    settings = Settings(max_sessions=4, session_create_rate_per_min=1000, node_id="node-a", resume_grace_s=30)
    first, cleanup = await start_server(settings, None)
    media = first.media
    await media.store.close()
    media.store = SqliteStore(str(tmp_path))  # (start_server builds a memory store)
    await media.store.start()
    resp, pc = await call(http, first.url)
    sid, token, mine = resp.headers["X-Session-ID"], resp.headers["X-Resume-Token"], own(resp)
    await play_a_turn(media, sid, "Hello there.", "Hi! How can I help?")
    await media.flush()
    # Crash: no session ends, nothing more is written; only sockets and files go away.
    runner_cleanup, _, bus_close = cleanup
    for task in media.tasks:
        task.cancel()
    await asyncio.gather(*media.tasks, return_exceptions=True)
    await media.store.close()  # before the peers, so their close cannot be written either
    for peer in list(media.peers.values()):
        await peer.close()
    await runner_cleanup()
    await bus_close()
    await pc.close()

    bus = MemoryBus()
    await bus.start()
    second = MediaServer(settings, bus, SqliteStore(str(tmp_path)))
    await second.start()
    from aiohttp import web

    from voxline.media.app import create_app

    port = free_port()
    runner = web.AppRunner(create_app(second, settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    try:
        state = await get_json(http, f"{url}/sessions/{sid}", mine)
        assert state["state"] == "disconnected" and len(state["history"]) == 2
        resumed, pc2 = await call(http, url, **{"X-Session-ID": sid, "X-Resume-Token": token})
        assert resumed.status == 201 and resumed.headers["X-Session-ID"] == sid
        state = await get_json(http, f"{url}/sessions/{sid}", mine)
        assert state["state"] == "connected" and state["history"][0]["content"] == "Hello there."
        await pc2.close()
    finally:
        await runner.cleanup()
        await second.stop()
        await bus.close()


def _spawn(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VOXLINE_SESSION_STORE": "sqlite", "VOXLINE_DATA_DIR": str(data_dir),
           "VOXLINE_PORT": str(port), "VOXLINE_RESUME_GRACE_S": "1", "VOXLINE_NODE_ID": "restart-test",
           "VOXLINE_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "voxline", "media"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


async def _wait_healthy(http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]) -> None:
    async def up() -> bool:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else "exited"
        try:
            async with http.get(f"{url}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for(up, "the media server did not start", timeout=60)


async def test_kill_9_and_restart_lists_live_sessions_as_ended_server_restart(tmp_path: Path, http) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _spawn(tmp_path, port)
    try:
        await _wait_healthy(http, url, proc)
        live, pc1 = await call(http, url, **{"X-Session-ID": "tmp-live"})
        done, pc2 = await call(http, url, **{"X-Session-ID": "tmp-done"})
        live_id, done_id = live.headers["X-Session-ID"], done.headers["X-Session-ID"]
        async with http.delete(url + done.headers["Location"], headers=own(done)) as resp:
            assert resp.status == 200
        os.killpg(proc.pid, signal.SIGKILL)  # no clean shutdown at all
        proc.wait(10)
        await pc1.close()
        await pc2.close()

        proc = _spawn(tmp_path, port)
        await _wait_healthy(http, url, proc)

        async def restart_ended() -> bool:
            state = await get_json(http, f"{url}/sessions/{live_id}", own(live))  # its secret outlives a kill -9
            return bool(state["state"] == "ended")

        await wait_for(restart_ended, "the orphaned session was not ended after the grace period")
        listing = await get_json(http, f"{url}/sessions?state=ended")
        by_id = {s["session_id"]: s for s in listing["sessions"]}
        assert by_id[live_id]["end_reason"] == "server restart" and by_id[live_id]["client_ref"] == "tmp-live"
        assert by_id[done_id]["end_reason"] == "ended by the client (DELETE)"
        assert listing["aggregates"]["ended_by_reason"]["server restart"] == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
