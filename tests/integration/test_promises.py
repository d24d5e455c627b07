"""README's promises about the HTTP surface and session lifecycle, each checked as stated.

Readiness and store outages answer 503, CORS exposes every header it lists, the creation
limit counts per client address, `listen_on_connect=false` keeps audio from the agent until
`/listening/start`, a bug answers a JSON 500 without a traceback, and sessions that never
connect or that receive no media are ended by their timeouts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from audio_helpers import until
from tests.integration.test_http_api import ORIGIN, expect_error, make_offer, post_offer
from voxline.bus.codec import AudioMessage
from voxline.bus.topics import Topic
from voxline.client.audio import WavSource
from voxline.client.whip import WhipClient
from voxline.rtc.connection import new_peer_connection

EXPOSED = ("Location", "X-Session-ID", "X-Resume-Token", "X-Session-Token", "ETag", "Link", "Retry-After")  # README's list


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_readyz_is_503_while_the_server_is_not_ready(media_server, http) -> None:
    assert (await http.get(f"{media_server.url}/readyz")).status == 200
    media_server.media.ready = False  # as while starting or stopping
    try:
        body = await expect_error(await http.get(f"{media_server.url}/readyz"), 503, "not_ready")
        assert body["detail"]
        assert (await http.get(f"{media_server.url}/healthz")).status == 200  # alive all the same
    finally:
        media_server.media.ready = True


class _DownStore:
    """A session store whose back-end is gone: every call fails as a lost connection does."""

    def __getattr__(self, name: str) -> Any:
        async def fail(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionRefusedError("store down")
        return fail


async def test_session_listing_is_503_while_the_store_is_down(media_server, http) -> None:
    assert (await http.get(f"{media_server.url}/sessions")).status == 200
    real, media_server.media.store = media_server.media.store, _DownStore()
    try:
        resp = await http.get(f"{media_server.url}/sessions")
        await expect_error(resp, 503, "store_unavailable")
        assert "Traceback" not in await resp.text()
    finally:
        media_server.media.store = real


async def test_cors_exposes_every_header_readme_lists(media_server, http) -> None:
    sdp, pc = await make_offer()
    try:
        resp = await post_offer(http, media_server.url, sdp, Origin=ORIGIN)
        assert resp.status == 201
        exposed = {h.strip().lower() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
        assert {h.lower() for h in EXPOSED} <= exposed, exposed
        for header in ("Location", "X-Session-ID", "X-Resume-Token", "X-Session-Token", "ETag"):  # and a 201 carries them
            assert resp.headers.get(header), header
        await http.delete(media_server.url + resp.headers["Location"],
                          headers={"X-Session-Token": resp.headers["X-Session-Token"]})
    finally:
        await pc.close()


@pytest.mark.parametrize("media_server", [{"session_create_rate_per_min": 2, "max_sessions": 6}], indirect=True)
async def test_the_creation_limit_is_per_client_address(media_server) -> None:
    """Two clients (127.0.0.1 and 127.0.0.2, both loopback): one at its limit leaves the other free."""
    pcs = []

    async def create(http: aiohttp.ClientSession) -> aiohttp.ClientResponse:
        sdp, pc = await make_offer()
        pcs.append(pc)
        return await post_offer(http, media_server.url, sdp)

    a = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.1", 0)))
    b = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    try:
        assert [(await create(a)).status for _ in range(2)] == [201, 201]
        limited = await create(a)
        await expect_error(limited, 429, "rate_limited")
        assert int(limited.headers["Retry-After"]) > 0
        assert (await create(b)).status == 201  # another address is not held to a's count
        assert (await create(a)).status == 429  # and a stays limited
    finally:
        await a.close()
        await b.close()
        for pc in pcs:
            await pc.close()


@pytest.mark.parametrize("media_server", [{"listen_on_connect": False}], indirect=True)
async def test_listen_on_connect_false_keeps_audio_from_the_agent_until_listening_starts(media_server, http) -> None:
    heard: list[AudioMessage] = []
    sub = await media_server.media.bus.subscribe([Topic.AUDIO_IN])

    async def collect() -> None:
        async for msg in sub:
            heard.append(AudioMessage.decode(msg.value))

    task = asyncio.create_task(collect())
    client = WhipClient(media_server.url)
    try:
        session = await client.connect(WavSource())
        sid = session.session_id
        peer = media_server.media.peers[sid]
        assert await until(lambda: peer.frames_in > 25, 10), "no audio reached the media server"
        state = await (await http.get(f"{media_server.url}/sessions/{sid}", headers=session.headers)).json()
        assert state["listening"] is False
        assert not [m for m in heard if m.session_id == sid]  # received, but not passed on
        resp = await http.post(f"{media_server.url}/listening/start", json={"session_id": sid}, headers=session.headers)
        assert (await resp.json())["listening"] is True
        assert await until(lambda: any(m.session_id == sid for m in heard), 5), "audio did not flow after start"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sub.close()
        await client.close()


async def test_an_unhandled_error_is_a_json_500_without_a_traceback(media_server, http, monkeypatch) -> None:
    sdp, pc = await make_offer()
    created = await post_offer(http, media_server.url, sdp)
    sid = created.headers["X-Session-ID"]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("internal detail that must stay inside")

    monkeypatch.setattr(media_server.media.registry, "get", broken)
    resp = await http.post(f"{media_server.url}/listening/stop", json={"session_id": sid},
                           headers={"X-Session-Token": created.headers["X-Session-Token"]})
    await expect_error(resp, 500, "internal")
    text = await resp.text()
    assert "Traceback" not in text and "internal detail" not in text and "RuntimeError" not in text, text
    monkeypatch.undo()
    assert (await http.get(f"{media_server.url}/healthz")).status == 200  # the server goes on
    await pc.close()


@pytest.mark.parametrize("media_server", [{"session_connect_timeout_s": 1.0}], indirect=True)
async def test_a_session_that_never_connects_is_ended_after_the_connect_timeout(media_server, http) -> None:
    sdp, pc = await make_offer()  # the answer is never applied: no ICE, no DTLS
    sid = (await post_offer(http, media_server.url, sdp)).headers["X-Session-ID"]
    try:
        registry = media_server.media.registry
        assert registry.get(sid).state.value != "ended"
        assert await until(lambda: registry.get(sid).state.value == "ended", 10), registry.get(sid).state
        assert sid not in media_server.media.peers
    finally:
        await pc.close()


@pytest.mark.parametrize("media_server", [{"session_idle_timeout_s": 1.5}], indirect=True)
async def test_a_connected_peer_that_sends_no_media_ends_at_the_idle_timeout(media_server, http) -> None:
    """Connected (ICE and DTLS up, RTCP flowing), but the caller's microphone sends nothing."""
    pc = new_peer_connection()
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    resp = await post_offer(http, media_server.url, pc.localDescription.sdp)
    assert resp.status == 201, await resp.text()
    sid = resp.headers["X-Session-ID"]
    from aiortc import RTCSessionDescription

    await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
    try:
        assert await until(lambda: pc.connectionState == "connected", 10), pc.connectionState
        registry = media_server.media.registry
        assert await until(lambda: registry.get(sid).state.value == "ended", 10), registry.get(sid).state
        assert sid not in media_server.media.peers
    finally:
        await pc.close()
