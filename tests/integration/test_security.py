"""Security: bearer-token auth on every API surface, public page and probes, CORS allow-list,
unguessable session IDs, and no secret in the logs."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from audio_helpers import at48k
from sentences import SPRING
from tests.integration.conftest import start_server, stop_server
from tests.integration.test_http_api import make_offer, post_offer
from voxline.bench.system import free_port
from voxline.client.caller import Caller
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
        session_routes = {f"/whip/{sid}", "/listening/start", "/listening/stop", f"/sessions/{sid}"}
        for method, path, kw in guarded:
            assert await _status(http, method, url + path, **kw) == 401, (method, path)
            wrong = {**kw, "headers": {**kw.get("headers", {}), "Authorization": "Bearer wrong"}}  # type: ignore[dict-item]
            # a session's routes look the session up before judging a presented secret
            expected = 404 if path in session_routes and method != "PATCH" else 401
            assert await _status(http, method, url + path, **wrong) == expected, (method, path)
            # a token in the query only counts for the WebSocket, never with a wrong header
            assert await _status(http, method, url + path + "?token=nope", **kw) == 401
        # with the token, the same calls reach their handlers
        resp = await post_offer(http, url, sdp, **AUTH)
        assert resp.status == 201
        real, secret = resp.headers["X-Session-ID"], resp.headers["X-Session-Token"]
        own = {**AUTH, "X-Session-Token": secret}  # the callers' token and this session's secret
        assert await _status(http, "GET", f"{url}/sessions/{real}", headers=own) == 200
        assert await _status(http, "GET", f"{url}/sessions", headers=AUTH) == 200
        assert await _status(http, "POST", f"{url}/listening/stop", json={"session_id": real}, headers=own) == 200
        assert await _status(http, "GET", f"{url}/metrics", headers=AUTH) == 200
        # the public surface: page, assets, probes, CORS preflight
        for path in ("/", "/healthz", "/readyz"):
            assert await _status(http, "GET", url + path) == 200, path
        assert await _status(http, "OPTIONS", f"{url}/whip", headers={
            "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"}) == 204
        # WebSocket: refused without the session's secret, accepted with it as ?token=
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{url}/sessions/{real}/events")
        assert refused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(f"{url}/sessions/{real}/events?token=wrong")
        async with http.ws_connect(f"{url}/sessions/{real}/events?token={secret}") as ws:
            assert (await ws.receive_json())["session_id"] == real
        assert await _status(http, "DELETE", f"{url}/whip/{real}", headers=own) == 200
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


class FakeRemoteModels:
    """An OpenAI-compatible STT/LLM/TTS vendor on loopback (fakes at the model boundary) that
    notes the bearer key of every request; its reply to the first caller's turn is an error that
    quotes the key back, as vendors' "incorrect API key provided: sk-..." errors do."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []  # (path, Authorization header)
        self.chats = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/audio/transcriptions", self.stt)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/audio/speech", self.speech)
        return app

    def _seen(self, request: web.Request) -> None:
        self.keys.append((request.path, request.headers.get("Authorization", "")))

    async def stt(self, request: web.Request) -> web.Response:
        self._seen(request)
        await request.read()
        return web.json_response({"text": "What is the capital of France?"})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        body = await request.json()
        # The first caller's turn is refused; the server's warm-up reply at start-up (to "Hi") is not counted.
        if any("France" in str(m.get("content")) for m in body.get("messages", [])):
            self.chats += 1
        if self.chats == 1:
            shown = request.headers.get("Authorization", "")
            return web.json_response({"error": {"message": f"Incorrect API key provided: {shown}"}}, status=401)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in ("Paris is ", "the capital."):
            await resp.write(f"data: {json.dumps({'choices': [{'delta': {'content': piece}}]})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def speech(self, request: web.Request) -> web.Response:
        self._seen(request)
        await request.read()
        t = np.arange(24_000 // 2) / 24_000  # half a second of a tone at 24 kHz
        return web.Response(body=(6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16).tobytes(),
                            content_type="audio/pcm")


async def test_no_secret_in_the_logs_of_a_real_process_that_uses_them(speech, tmp_path) -> None:
    """`voxline run` as its own process at DEBUG, on remote back-ends that get the API key (one
    of them echoes it in an error), called with the auth token in headers and the WebSocket
    URL: neither secret appears anywhere in what the process wrote."""
    remote = FakeRemoteModels()
    runner = web.AppRunner(remote.app(), access_log=None)
    await runner.setup()
    remote_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", remote_port).start()
    port = free_port()
    remote_url = f"http://127.0.0.1:{remote_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXLINE_")}
    env.update({"VOXLINE_AUTH_TOKEN": TOKEN, "VOXLINE_API_KEY": API_KEY, "VOXLINE_LOG_LEVEL": "DEBUG",
                "VOXLINE_LOG_FORMAT": "json", "VOXLINE_SESSION_STORE": "memory", "VOXLINE_RTC_HOST_ADDRESSES": "127.0.0.1",
                "VOXLINE_STT": "openai", "VOXLINE_LLM": "openai", "VOXLINE_TTS": "openai", "VOXLINE_STT_URL": remote_url,
                "VOXLINE_LLM_URL": remote_url, "VOXLINE_TTS_URL": remote_url, "VOXLINE_MODEL_TIMEOUT_S": "5",
                "PYTHONUNBUFFERED": "1"})
    log_path = tmp_path / "voxline-run.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "voxline", "run", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def ready() -> bool:
                try:
                    async with http.get(f"{url}/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return proc.poll() is not None
            deadline = time.monotonic() + 60
            while not await ready():
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                await asyncio.sleep(0.2)
            assert proc.poll() is None, log_path.read_text()[-3000:]
            # refused with a wrong token that contains the right one
            assert await _status(http, "GET", f"{url}/sessions", headers={"Authorization": f"Bearer x{TOKEN}"}) == 401
        async with Caller(url, token=TOKEN) as caller:
            question = at48k(speech(SPRING.text))
            await caller.say(question)  # turn 1: the LLM vendor refuses (and quotes the key)
            assert await caller.wait_for(lambda e: e["type"] == "error", 30), caller.events
            assert await caller.wait_reply_done(after=1, timeout=30)
            await caller.say(question)  # turn 2: answered
            assert await caller.wait_reply_done(after=2, timeout=30), caller.events
            errors = " ".join(json.dumps(e) for e in caller.of_type("error"))
            assert API_KEY not in errors, errors  # nor in what the caller is told
            assert caller.client.session is not None
            secret = caller.client.session.token
        async with aiohttp.ClientSession() as http:
            await _status(http, "GET", f"{url}/sessions/{caller.session_id}?token={TOKEN}", headers=AUTH)
            await _status(http, "GET", f"{url}/sessions/{caller.session_id}", headers={"X-Session-Token": secret})
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        await runner.cleanup()
    # The key was really used: every request to the vendor carried it.
    paths = {path for path, _ in remote.keys}
    assert {"/v1/audio/transcriptions", "/v1/chat/completions", "/v1/audio/speech"} <= paths, remote.keys
    assert all(auth == f"Bearer {API_KEY}" for _, auth in remote.keys), remote.keys
    text = log_path.read_text(errors="replace")
    assert "session created" in text and "401" in text, text[-3000:]  # the logs saw the requests and the refusal
    assert TOKEN not in text, [line for line in text.splitlines() if TOKEN in line][:3]
    assert API_KEY not in text, [line for line in text.splitlines() if API_KEY in line][:3]
    assert secret and secret not in text, [line for line in text.splitlines() if secret in line][:3]
