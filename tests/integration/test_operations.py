"""What an operator's load balancer and rollout see: readiness when full, and draining on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.test_http_api import make_offer, post_offer
from tests.integration.test_recovery import _wait_healthy, call, get_json, own, play_a_turn, wait_for
from tests.integration.test_sessions_store import SETTINGS, Node
from voxline.bench.system import free_port
from voxline.config import Settings
from voxline.media.relay import RESUMABLE_CLOSE
from voxline.sessions.store import create_store


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize("media_server", [{"max_sessions": 1}], indirect=True)
async def test_readyz_is_503_while_full_and_ready_again_when_a_session_ends(media_server, http) -> None:
    async with http.get(f"{media_server.url}/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["max_sessions"] == 1
    sdp, pc = await make_offer()
    created = await post_offer(http, media_server.url, sdp)
    assert created.status == 201
    async with http.get(f"{media_server.url}/readyz") as resp:  # full: out of the rotation
        assert resp.status == 503
        assert (await resp.json())["error"] == "full"
        assert resp.headers["Retry-After"]
    async with http.get(f"{media_server.url}/healthz") as resp:  # alive all the same: no restart
        assert resp.status == 200
    async with http.delete(f"{media_server.url}{created.headers['Location']}",
                           headers={"X-Session-Token": created.headers["X-Session-Token"]}) as resp:
        assert resp.status == 200
    async with http.get(f"{media_server.url}/readyz") as resp:
        assert resp.status == 200
    await pc.close()


async def _status(http: aiohttp.ClientSession, method: str, url: str, **kw: object) -> tuple[int, dict]:
    async with http.request(method, url, **kw) as resp:  # type: ignore[arg-type]
        return resp.status, (await resp.json() if resp.content_type == "application/json" else {})


async def test_a_draining_media_server_refuses_new_calls_keeps_live_ones_and_ends_early_when_they_hang_up(
        redis_url: str, http) -> None:
    stores = [create_store("redis", redis_url=redis_url) for _ in range(2)]
    a = await Node(Settings(**SETTINGS, node_id="drain-a"), stores[0]).start()
    try:
        await stores[0].redis.flushdb()  # type: ignore[attr-defined]
        resp, pc = await call(http, a.url)
        sid = resp.headers["X-Session-ID"]
        drain = asyncio.create_task(a.media.drain(timeout_s=60))
        await wait_for(lambda: a.media.draining, "no drain")
        status, body = await _status(http, "GET", f"{a.url}/readyz")
        assert status == 503 and body["error"] == "draining"  # out of the load balancer's rotation
        sdp, pc_new = await make_offer()
        refused = await post_offer(http, a.url, sdp)
        assert refused.status == 503 and refused.headers["Retry-After"]  # the next try reaches another pod
        await asyncio.sleep(0.5)
        assert not drain.done() and pc.connectionState == "connected"  # the live call goes on
        assert a.media.peers[sid].pc.connectionState == "connected"
        assert a.media.registry.get(sid).state.value == "connected"  # type: ignore[union-attr]
        status, _ = await _status(http, "DELETE", f"{a.url}/whip/{sid}", headers=own(resp))  # the caller hangs up
        assert status == 200
        assert await asyncio.wait_for(drain, 10) == 0  # done as soon as the last call ended, none handed over
        await pc.close()
        await pc_new.close()
    finally:
        await a.stop()


async def test_calls_left_at_the_end_of_a_drain_resume_on_another_media_server_with_their_history(
        redis_url: str, http) -> None:
    stores = [create_store("redis", redis_url=redis_url) for _ in range(2)]
    a = await Node(Settings(**SETTINGS, node_id="drain-a"), stores[0]).start()
    b = await Node(Settings(**SETTINGS, node_id="drain-b"), stores[1]).start()
    try:
        await stores[0].redis.flushdb()  # type: ignore[attr-defined]
        resp, pc = await call(http, a.url)
        sid, token = resp.headers["X-Session-ID"], resp.headers["X-Resume-Token"]
        await play_a_turn(a.media, sid, "Remember the number seven.", "Seven, noted.")
        events = await http.ws_connect(f"{a.url}/sessions/{sid}/events",
                                       headers={"X-Session-Token": resp.headers["X-Session-Token"]})
        assert await a.media.drain(timeout_s=0.5) == 1  # the caller stayed: handed over
        while (msg := await asyncio.wait_for(events.receive(), 5)).type == aiohttp.WSMsgType.TEXT:
            pass  # the backlog, then the close that tells the page to resume at once
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == RESUMABLE_CLOSE, msg
        stored = await stores[1].get(sid)
        assert stored is not None and stored.state.value == "disconnected" and not stored.ended
        await wait_for(lambda: pc.connectionState in ("closed", "failed"), "the caller was not told")
        moved, pc2 = await call(http, b.url, **{"X-Session-ID": sid, "X-Resume-Token": token})
        assert moved.status == 201 and moved.headers["X-Session-ID"] == sid
        assert "X-Session-Token" not in moved.headers
        state = await get_json(http, f"{b.url}/sessions/{sid}", own(resp))  # the secret from A opens it on B
        assert state["state"] == "connected" and state["node"] == "drain-b"
        assert [m["content"] for m in state["history"]] == ["Remember the number seven.", "Seven, noted."]
        await a.stop()  # what stopping does to A's copy must not end B's call
        assert (await stores[1].get(sid)).state.value == "connected"  # type: ignore[union-attr]
        await pc.close()
        await pc2.close()
    finally:
        await a.stop()
        await b.stop()


def _spawn_media(data_dir: Path, port: int, drain_s: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VOXLINE_SESSION_STORE": "sqlite", "VOXLINE_DATA_DIR": str(data_dir),
           "VOXLINE_PORT": str(port), "VOXLINE_DRAIN_TIMEOUT_S": str(drain_s), "VOXLINE_NODE_ID": "sigterm-test",
           "VOXLINE_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "voxline", "media"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


async def test_sigterm_drains_a_real_media_process_and_it_exits_when_the_last_call_ends(tmp_path: Path, http) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _spawn_media(tmp_path, port, drain_s=60)
    try:
        await _wait_healthy(http, url, proc)
        resp, pc = await call(http, url)
        sid = resp.headers["X-Session-ID"]
        proc.send_signal(signal.SIGTERM)
        status, body = 0, {}
        for _ in range(50):  # the signal is handled at once
            status, body = await _status(http, "GET", f"{url}/readyz")
            if status == 503:
                break
            await asyncio.sleep(0.1)
        assert status == 503 and body["error"] == "draining"
        await asyncio.sleep(0.5)
        assert proc.poll() is None and pc.connectionState == "connected"  # still serving the call
        status, _ = await _status(http, "DELETE", f"{url}/whip/{sid}", headers=own(resp))
        assert status == 200
        assert await asyncio.to_thread(proc.wait, 15) == 0  # left well before the 60 s drain limit
        await pc.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("media_server", [{"public_url": "https://voice.example.com/base/"}], indirect=True)
async def test_public_url_makes_the_whip_location_absolute(media_server, http) -> None:
    sdp, pc = await make_offer()
    resp = await post_offer(http, media_server.url, sdp)
    assert resp.status == 201
    sid = resp.headers["X-Session-ID"]
    assert resp.headers["Location"] == f"https://voice.example.com/base/whip/{sid}"
    await pc.close()


@pytest.mark.parametrize("media_server", [{"auth_token": "operator-secret", "metrics_token": "scrape-secret"}],
                         indirect=True)
async def test_prometheus_scrapes_metrics_with_its_own_token_which_opens_nothing_else(media_server, http) -> None:
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async with http.get(f"{media_server.url}/metrics", headers=bearer("scrape-secret")) as resp:
        assert resp.status == 200 and "voxline_sessions_active" in await resp.text()
    async with http.get(f"{media_server.url}/metrics") as resp:
        assert resp.status == 401
    async with http.get(f"{media_server.url}/sessions", headers=bearer("scrape-secret")) as resp:
        assert resp.status == 401  # the scrape credential reads metrics, nothing else
    async with http.get(f"{media_server.url}/metrics", headers=bearer("operator-secret")) as resp:
        assert resp.status == 200
