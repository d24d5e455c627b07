"""The HTTP contract of the media server, asserted status by status (real aiortc offers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from voxline.rtc.connection import new_peer_connection
from voxline.rtc.sdp import opus_fmtp
from voxline.sessions.ids import is_valid_session_id, new_session_id

ORIGIN = "http://localhost:5173"


async def make_offer(kind: str = "audio") -> tuple[str, object]:
    pc = new_peer_connection()
    pc.addTransceiver(kind, direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp, pc


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post_offer(http: aiohttp.ClientSession, url: str, sdp: str, **headers: str) -> aiohttp.ClientResponse:
    resp = await http.post(f"{url}/whip", data=sdp, headers={"Content-Type": "application/sdp", **headers})
    await resp.read()
    return resp


async def expect_error(resp: aiohttp.ClientResponse, status: int, code: str | None = None) -> dict:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error", "detail"} and body["detail"]
    if code:
        assert body["error"] == code
    return body


async def test_whip_creates_a_session_with_a_server_id(media_server, http) -> None:
    sdp, pc = await make_offer()
    resp = await post_offer(http, media_server.url, sdp, **{"X-Session-ID": "tmp-abc123", "Origin": ORIGIN})
    assert resp.status == 201
    assert resp.content_type == "application/sdp"
    sid = resp.headers["X-Session-ID"]
    assert is_valid_session_id(sid) and sid != "tmp-abc123"
    assert resp.headers["Location"] == f"/whip/{sid}"
    assert resp.headers["ETag"]
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = resp.headers["Access-Control-Expose-Headers"]
    assert all(h in exposed for h in ("Location", "X-Session-ID", "X-Session-Token", "ETag"))
    own = {"X-Session-Token": resp.headers["X-Session-Token"]}
    assert len(own["X-Session-Token"]) >= 22 and own["X-Session-Token"] != resp.headers["X-Resume-Token"]
    answer = await resp.text()
    assert answer.startswith("v=0") and "m=audio" in answer
    # The caller's Opus encoder is asked for wideband at 64 kbit/s: every bit where STT listens.
    assert opus_fmtp(answer) == {"maxplaybackrate": "16000", "maxaveragebitrate": "64000"}
    state = await (await http.get(f"{media_server.url}/sessions/{sid}", headers=own)).json()
    assert state["session_id"] == sid and state["client_ref"] == "tmp-abc123"
    assert state["listening"] is True and state["state"] == "connected"
    await pc.close()


async def test_whip_rejects_bad_offers(media_server, http) -> None:
    resp = await http.post(f"{media_server.url}/whip", data="v=0", headers={"Content-Type": "text/plain"})
    await expect_error(resp, 415, "unsupported_media_type")
    await expect_error(await post_offer(http, media_server.url, "not sdp at all"), 400, "bad_sdp")
    video_sdp, pc = await make_offer("video")
    await expect_error(await post_offer(http, media_server.url, video_sdp), 400, "bad_sdp")
    await pc.close()
    broken = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:x\r\na=fingerprint:sha-256 00\r\n"
    await expect_error(await post_offer(http, media_server.url, broken), 400, "bad_sdp")
    huge = "v=0\r\n" + "a=x\r\n" * 100_000
    await expect_error(await post_offer(http, media_server.url, huge), 413)
    assert media_server.media.registry.live_count() == 0  # nothing half-made is left behind


async def test_session_limit_answers_503_with_retry_after(media_server, http) -> None:
    pcs = []
    for _ in range(media_server.settings.max_sessions):
        sdp, pc = await make_offer()
        pcs.append(pc)
        assert (await post_offer(http, media_server.url, sdp)).status == 201
    sdp, pc = await make_offer()
    pcs.append(pc)
    resp = await post_offer(http, media_server.url, sdp)
    await expect_error(resp, 503, "session_limit")
    assert int(resp.headers["Retry-After"]) > 0
    for pc in pcs:
        await pc.close()


@pytest.mark.parametrize("media_server", [{"session_create_rate_per_min": 2}], indirect=True)
async def test_session_creation_rate_is_limited_per_client(media_server, http) -> None:
    statuses = []
    pcs = []
    for _ in range(3):
        sdp, pc = await make_offer()
        pcs.append(pc)
        statuses.append((resp := await post_offer(http, media_server.url, sdp)).status)
    assert statuses == [201, 201, 429]
    assert int(resp.headers["Retry-After"]) > 0
    for pc in pcs:
        await pc.close()


async def test_delete_ends_the_session_and_frees_it(media_server, http) -> None:
    sdp, pc = await make_offer()
    resp = await post_offer(http, media_server.url, sdp)
    location, sid = resp.headers["Location"], resp.headers["X-Session-ID"]
    own = {"X-Session-Token": resp.headers["X-Session-Token"]}
    deleted = await http.delete(media_server.url + location, headers=own)
    assert deleted.status == 200 and (await deleted.json())["state"] == "ended"
    assert sid not in media_server.media.peers
    assert (await (await http.get(f"{media_server.url}/sessions/{sid}", headers=own)).json())["state"] == "ended"
    await expect_error(await http.delete(media_server.url + location, headers=own), 404)
    await expect_error(await http.delete(f"{media_server.url}/whip/{new_session_id()}", headers=own), 404,
                       "unknown_session")
    await expect_error(await http.delete(f"{media_server.url}/whip/not-an-id"), 400, "malformed_session_id")
    await pc.close()


async def test_patch_is_405_without_trickle_ice(media_server, http) -> None:
    resp = await http.patch(f"{media_server.url}/whip/{new_session_id()}", data="a=candidate",
                            headers={"Content-Type": "application/trickle-ice-sdpfrag"})
    await expect_error(resp, 405)


async def test_cors_preflight_and_allow_list(media_server, http) -> None:
    ok = await http.options(f"{media_server.url}/whip", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-session-id"})
    assert ok.status == 204
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "X-Session-ID" in ok.headers["Access-Control-Allow-Headers"]
    evil = await http.options(f"{media_server.url}/whip", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in evil.headers


async def test_listening_start_and_stop(media_server, http) -> None:
    sdp, pc = await make_offer()
    created = await post_offer(http, media_server.url, sdp)
    sid, own = created.headers["X-Session-ID"], {"X-Session-Token": created.headers["X-Session-Token"]}
    for path, expected in (("stop", False), ("start", True)):
        resp = await http.post(f"{media_server.url}/listening/{path}", json={"session_id": sid}, headers=own)
        assert resp.status == 200
        assert await resp.json() == {"session_id": sid, "listening": expected}
        assert media_server.media.registry.get(sid).listening is expected
    url = f"{media_server.url}/listening/start"
    as_json = {"Content-Type": "application/json"}
    await expect_error(await http.post(url, data=b"{}", headers=as_json), 400, "missing_session_id")
    await expect_error(await http.post(url, data=b"{nope", headers=as_json), 400, "bad_json")
    await expect_error(await http.post(url, data=b"{}"), 415, "unsupported_media_type")
    await expect_error(await http.post(url, json={"session_id": "session_123_abc"}), 400, "malformed_session_id")
    await expect_error(await http.post(url, json={"session_id": 42}), 400, "malformed_session_id")
    future = f"session_{int(time.time() * 1000) + 3_600_000}_{'a' * 16}"
    await expect_error(await http.post(url, json={"session_id": future}), 400, "malformed_session_id")
    await expect_error(await http.post(url, json={"session_id": new_session_id()}, headers=own), 404, "unknown_session")
    await http.delete(f"{media_server.url}/whip/{sid}", headers=own)
    await expect_error(await http.post(url, json={"session_id": sid}, headers=own), 409, "session_ended")
    await pc.close()


async def test_unknown_routes_and_sessions_are_json_404(media_server, http) -> None:
    unknown = f"{media_server.url}/sessions/{new_session_id()}"
    await expect_error(await http.get(unknown, headers={"X-Session-Token": "x" * 22}), 404, "unknown_session")
    await expect_error(await http.get(f"{media_server.url}/no/such/route"), 404)
    await expect_error(await http.put(f"{media_server.url}/whip"), 405)
    health = await http.get(f"{media_server.url}/healthz")
    assert health.status == 200
    page = await http.get(f"{media_server.url}/")
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]


async def test_events_websocket_replays_the_backlog(media_server, http) -> None:
    sdp, pc = await make_offer()
    resp = await post_offer(http, media_server.url, sdp, **{"X-Session-ID": "tmp-ws"})
    sid, own = resp.headers["X-Session-ID"], {"X-Session-Token": resp.headers["X-Session-Token"]}
    async with http.ws_connect(f"{media_server.url}/sessions/{sid}/events", headers=own) as ws:
        first = await asyncio.wait_for(ws.receive_json(), 5)
        assert first["session_id"] == sid and first["type"] == "log" and first["stage"] == "whip"
        assert sid in first["message"] and "tmp-ws" in first["message"]
        await http.post(f"{media_server.url}/listening/stop", json={"session_id": sid}, headers=own)
        seen = [await asyncio.wait_for(ws.receive_json(), 5) for _ in range(2)]
        assert all(e["session_id"] == sid and "ts" in e for e in seen)
        await http.delete(f"{media_server.url}/whip/{sid}", headers=own)
        types = []
        while "session.ended" not in types:
            types.append((await asyncio.wait_for(ws.receive_json(), 5))["type"])
    await pc.close()


@pytest.mark.parametrize("media_server", [{"session_idle_timeout_s": 1.5}], indirect=True)
async def test_a_vanished_client_is_cleaned_up(media_server, http) -> None:
    from voxline.client.audio import WavSource
    from voxline.client.whip import WhipClient

    client = WhipClient(media_server.url)
    session = await client.connect(WavSource())
    await asyncio.sleep(1.0)
    await client.pc.close()  # the tab closes: no DELETE, media stops
    await client.http.close()
    deadline = time.time() + 10
    while media_server.media.registry.get(session.session_id).state.value != "ended":
        assert time.time() < deadline, "the vanished session was not ended"
        await asyncio.sleep(0.2)
    assert session.session_id not in media_server.media.peers
