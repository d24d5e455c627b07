"""A hostile page against the real media server on loopback: a foreign Host (DNS rebinding),
a foreign-Origin WebSocket, a `text/plain` cross-site POST, and the page's security headers."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.integration.conftest import start_server, stop_server
from tests.integration.test_http_api import make_offer, post_offer
from voxline.config import Settings

EVIL = "http://evil.example"


async def _session(http: aiohttp.ClientSession, url: str) -> tuple[str, object, dict[str, str]]:
    """A new session: its ID, the offering peer, and the headers carrying its secret."""
    sdp, pc = await make_offer()
    resp = await post_offer(http, url, sdp)
    assert resp.status == 201
    return resp.headers["X-Session-ID"], pc, {"X-Session-Token": resp.headers["X-Session-Token"]}


async def test_foreign_host_is_421_and_known_names_pass(media_server) -> None:
    url = media_server.url
    port = url.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as http:
        sid, pc, own = await _session(http, url)
        for path in ("/sessions", f"/sessions/{sid}", "/metrics", "/", "/app.js"):
            async with http.get(url + path, headers={"Host": f"rebind.evil.example:{port}"}) as resp:
                assert resp.status == 421, path
                assert (await resp.json())["error"] == "misdirected_request"
        async with http.post(f"{url}/whip", data="v=0", headers={"Host": "evil.example",
                                                                "Content-Type": "application/sdp"}) as resp:
            assert resp.status == 421
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
            async with http.get(f"{url}/sessions/{sid}", headers={"Host": host, **own}) as resp:
                assert resp.status == 200, host
        async with http.get(f"{url}/healthz", headers={"Host": "evil.example"}) as resp:
            assert resp.status == 200  # probes come with whatever Host the prober uses
    await pc.close()  # type: ignore[attr-defined]


async def test_configured_host_names_pass() -> None:
    running, cleanup = await start_server(Settings(allowed_hosts=("voice.example.com",),
                                                   public_url="https://calls.example.org"), None)
    try:
        async with aiohttp.ClientSession() as http:
            for host, status in (("voice.example.com", 200), ("calls.example.org", 200), ("evil.example", 421)):
                async with http.get(f"{running.url}/sessions", headers={"Host": host}) as resp:
                    assert resp.status == status, host
    finally:
        await stop_server(cleanup)


async def test_foreign_origin_websocket_is_refused(media_server) -> None:
    url = media_server.url
    async with aiohttp.ClientSession() as http:
        sid, pc, own = await _session(http, url)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{url}/sessions/{sid}/events", headers={"Origin": EVIL, **own})
        assert refused.value.status == 403
        for origin in ("http://localhost:5173", url):  # the allow-list and our own origin
            async with http.ws_connect(f"{url}/sessions/{sid}/events", headers={"Origin": origin, **own}) as ws:
                assert (await ws.receive_json())["session_id"] == sid
    await pc.close()  # type: ignore[attr-defined]


async def test_text_plain_cross_site_post_cannot_stop_listening(media_server) -> None:
    url = media_server.url
    async with aiohttp.ClientSession() as http:
        sid, pc, own = await _session(http, url)
        body = json.dumps({"session_id": sid})
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            async with http.post(f"{url}/listening/stop", data=body,
                                 headers={"Content-Type": kind, "Origin": EVIL, **own}) as resp:
                assert resp.status == 415, kind
                assert (await resp.json())["error"] == "unsupported_media_type"
        state = await (await http.get(f"{url}/sessions/{sid}", headers=own)).json()
        assert state["listening"] is True
        async with http.post(f"{url}/listening/stop", json={"session_id": sid}, headers=own) as resp:
            assert resp.status == 200
    await pc.close()  # type: ignore[attr-defined]


async def test_page_and_assets_carry_security_headers(media_server) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/app.js", "/style.css", "/healthz"):
            async with http.get(media_server.url + path) as resp:
                assert resp.status == 200, path
                csp = resp.headers["Content-Security-Policy"]
                assert "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
                assert "script-src 'self'" in csp and "unsafe" not in csp
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert resp.headers["Referrer-Policy"] == "no-referrer"
                assert resp.headers["X-Frame-Options"] == "DENY"
    running, cleanup = await start_server(Settings(page_servers=("https://voice.example.com",),
                                                   frame_ancestors="https://portal.example.com"), None)
    try:
        async with aiohttp.ClientSession() as http, http.get(running.url + "/") as resp:
            csp = resp.headers["Content-Security-Policy"]
            assert "connect-src 'self' https://voice.example.com wss://voice.example.com;" in csp
            assert "frame-ancestors https://portal.example.com" in csp and "X-Frame-Options" not in resp.headers
    finally:
        await stop_server(cleanup)


async def test_operator_token_guards_listings_and_a_caller_token_does_not_open_them() -> None:
    running, cleanup = await start_server(Settings(auth_token="caller-tok", admin_token="operator-tok"), None)
    caller, operator = {"Authorization": "Bearer caller-tok"}, {"Authorization": "Bearer operator-tok"}
    try:
        async with aiohttp.ClientSession() as http:
            sdp, pc = await make_offer()
            resp = await post_offer(http, running.url, sdp, **caller)
            assert resp.status == 201
            sid, secret = resp.headers["X-Session-ID"], resp.headers["X-Session-Token"]
            for path in ("/sessions", "/metrics"):
                async with http.get(running.url + path, headers=caller) as r:
                    assert r.status == 401, path  # a caller's credential does not list others' calls
                async with http.get(running.url + path, headers=operator) as r:
                    assert r.status == 200, path
            async with http.get(f"{running.url}/sessions/{sid}", headers=operator) as r:
                assert r.status == 200  # the operator: any session
            async with http.get(f"{running.url}/sessions/{sid}?token={secret}") as r:
                assert r.status == 401  # ?token= only on the WebSocket
            async with http.ws_connect(f"{running.url}/sessions/{sid}/events?token={secret}") as ws:
                assert (await ws.receive_json())["session_id"] == sid
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # the callers' token is not the secret
                await http.ws_connect(f"{running.url}/sessions/{sid}/events?token=caller-tok")
            assert refused.value.status == 403
        await pc.close()  # type: ignore[attr-defined]
    finally:
        await stop_server(cleanup)
