"""Security: bearer-token auth on every API surface, public page and probes, CORS allow-list,
unguessable session IDs, and no secret in the logs."""

from __future__ import annotations

import logging
import math

import aiohttp
import pytest

from tests.integration.conftest import start_server, stop_server
from tests.integration.test_http_api import make_offer, post_offer
from voxline.config import Settings
from voxline.sessions.ids import ALPHABET, RANDOM_LEN, new_session_id

TOKEN = "tok-9f8e7d6c5b4a39281706"
API_KEY = "sk-remote-model-key-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AUTH_ON = pytest.mark.parametrize("media_server", [{"auth_token": TOKEN}], indirect=True)


async def _status(http: aiohttp.ClientSession, method: str, url: str, **kw: object) -> int:
    async with http.request(method, url, **kw) as resp:  # type: ignore[arg-type]
        await resp.read()
        if resp.status == 401:
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await resp.json())["error"] == "unauthorized"
        return resp.status


@AUTH_ON
async def test_token_guards_whip_api_and_admin_routes(media_server) -> None:
    url, sid = media_server.url, new_session_id()
    sdp, pc = await make_offer()
    async with aiohttp.ClientSession() as http:
        guarded = [("POST", "/whip", {"data": sdp, "headers": {"Content-Type": "application/sdp"}}),
                   ("DELETE", f"/whip/{sid}", {}), ("PATCH", f"/whip/{sid}", {}),
                   ("POST", "/listening/start", {"json": {"session_id": sid}}),
                   ("POST", "/listening/stop", {"json": {"session_id": sid}}),
                   ("GET", "/sessions", {}), ("GET", f"/sessions/{sid}", {}), ("GET", "/metrics", {}),
                   ("GET", "/openapi.json", {})]
        for method, path, kw in guarded:
            assert await _status(http, method, url + path, **kw) == 401, (method, path)
            wrong = {**kw, "headers": {**kw.get("headers", {}), "Authorization": "Bearer wrong"}}  # type: ignore[dict-item]
            assert await _status(http, method, url + path, **wrong) == 401, (method, path)
            # a token in the query only counts for the WebSocket, never with a wrong header
            assert await _status(http, method, url + path + "?token=nope", **kw) == 401
        # with the token, the same calls reach their handlers
        resp = await post_offer(http, url, sdp, **AUTH)
        assert resp.status == 201
        real = resp.headers["X-Session-ID"]
        assert await _status(http, "GET", f"{url}/sessions/{real}", headers=AUTH) == 200
        assert await _status(http, "GET", f"{url}/sessions", headers=AUTH) == 200
        assert await _status(http, "POST", f"{url}/listening/stop", json={"session_id": real}, headers=AUTH) == 200
        assert await _status(http, "GET", f"{url}/metrics", headers=AUTH) == 200
        # the public surface: page, assets, probes, CORS preflight
        for path in ("/", "/healthz", "/readyz"):
            assert await _status(http, "GET", url + path) == 200, path
        assert await _status(http, "OPTIONS", f"{url}/whip", headers={
            "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"}) == 204
        # WebSocket: refused without the token, accepted with ?token=
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{url}/sessions/{real}/events")
        assert refused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(f"{url}/sessions/{real}/events?token=wrong")
        async with http.ws_connect(f"{url}/sessions/{real}/events?token={TOKEN}") as ws:
            assert (await ws.receive_json())["session_id"] == real
        assert await _status(http, "DELETE", f"{url}/whip/{real}", headers=AUTH) == 200
    await pc.close()


async def test_static_assets_stay_public_with_auth() -> None:
    from voxline.media.app import WEB_DIR

    running, cleanup = await start_server(Settings(auth_token=TOKEN), None)
    try:
        async with aiohttp.ClientSession() as http:
            for asset in sorted(p.name for p in WEB_DIR.iterdir() if p.suffix in (".js", ".css"))[:3]:
                assert await _status(http, "GET", f"{running.url}/{asset}") == 200, asset
    finally:
        await stop_server(cleanup)


async def test_cors_wildcard_only_when_configured(media_server) -> None:
    pre = {"Access-Control-Request-Method": "POST"}
    async with aiohttp.ClientSession() as http:
        # default: the allow-list and the server's own origin, nothing else
        for origin, allowed in (("http://localhost:5173", True), (media_server.url, True),
                                ("http://evil.example", False), ("null", False)):
            async with http.options(f"{media_server.url}/whip", headers={"Origin": origin, **pre}) as resp:
                assert (resp.headers.get("Access-Control-Allow-Origin") == origin) is allowed, origin
                assert resp.headers.get("Access-Control-Allow-Origin") != "*"
        running, cleanup = await start_server(Settings(cors_origins=("*",)), None)
        try:
            async with http.options(f"{running.url}/whip", headers={"Origin": "http://evil.example", **pre}) as resp:
                assert resp.headers["Access-Control-Allow-Origin"] == "http://evil.example"
                assert "Access-Control-Allow-Credentials" not in resp.headers
        finally:
            await stop_server(cleanup)


def test_session_ids_have_at_least_80_bits_of_randomness() -> None:
    bits = RANDOM_LEN * math.log2(len(set(ALPHABET)))
    assert bits >= 80, bits
    ids = {new_session_id() for _ in range(5000)}
    assert len(ids) == 5000
    # every position uses the whole alphabet (no fixed or biased characters)
    tails = [i.rsplit("_", 1)[1] for i in ids]
    for pos in range(RANDOM_LEN):
        assert len({t[pos] for t in tails}) == len(ALPHABET)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_no_secret_in_logs() -> None:
    """Start-up (settings logged redacted), an authorised request, a refused one: no token, no key."""
    from voxline.logs import JsonFormatter, TextFormatter

    settings = Settings(auth_token=TOKEN, api_key=API_KEY, max_sessions=2)
    capture, root = _Capture(), logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    sdp, pc = await make_offer()
    try:
        logging.getLogger("voxline").info("settings", extra={"settings": settings.redacted()})
        running, cleanup = await start_server(settings, None)
        try:
            async with aiohttp.ClientSession() as http:
                resp = await post_offer(http, running.url, sdp, **AUTH)
                sid = resp.headers["X-Session-ID"]
                await _status(http, "GET", f"{running.url}/sessions/{sid}?token={TOKEN}", headers=AUTH)
                await _status(http, "GET", f"{running.url}/sessions", headers={"Authorization": f"Bearer x{TOKEN}"})
                async with http.ws_connect(f"{running.url}/sessions/{sid}/events?token={TOKEN}") as ws:
                    await ws.receive_json()
                await _status(http, "DELETE", f"{running.url}/whip/{sid}", headers=AUTH)
        finally:
            await stop_server(cleanup)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
        await pc.close()
    lines = []
    for record in capture.records:
        lines += [JsonFormatter().format(record), TextFormatter().format(record), record.getMessage(),
                  repr(record.__dict__)]
    text = "\n".join(lines)
    assert "session created" in text and "***" in text
    assert TOKEN not in text and API_KEY not in text
