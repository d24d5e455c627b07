"""Schemathesis against the live media server: every route, positive and negative inputs.

The server runs in the test's event loop (the `media_server` fixture); schemathesis and
hypothesis are synchronous, so they run in a worker thread and call the server over loopback.
Checks: no 5xx, every status is one the OpenAPI document declares, every body and content
type matches it. Afterwards a session made before the fuzzing still works.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.test_http_api import make_offer, post_offer
from voxline.client.audio import WavSource
from voxline.client.whip import WhipClient

EXAMPLES_PER_OPERATION = 15  # per operation and mode (positive, negative); no time budget: every operation runs
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
# SDP and trickle-ICE fragments are text: send them as text/plain would be sent.
schemathesis.serializer.alias("application/sdp", "text/plain")
schemathesis.serializer.alias("application/trickle-ice-sdpfrag", "text/plain")


def fuzz(base_url: str, doc: dict[str, Any]) -> dict[str, int]:
    """Run every operation's positive and negative cases; return calls made per operation."""
    schema = schemathesis.openapi.from_dict(doc)
    calls: dict[str, int] = {}
    spent: dict[str, float] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def run(case: schemathesis.Case) -> None:
                if operation.path == "/sessions/{session_id}/events" and operation.method.lower() == "get":
                    case.headers = {**(case.headers or {}), "Connection": "close"}
                t0 = time.monotonic()
                response = case.call(base_url=base_url, timeout=5)
                case.validate_response(response, checks=CHECKS)
                calls[operation.label] = calls.get(operation.label, 0) + 1
                spent[operation.label] = spent.get(operation.label, 0.0) + time.monotonic() - t0

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to break
    print({k: round(v, 2) for k, v in spent.items()})
    return calls


@pytest.mark.parametrize("media_server", [{"max_sessions": 5}], indirect=True)
async def test_fuzz_every_route_without_5xx_and_to_the_schema(media_server) -> None:
    async with aiohttp.ClientSession() as http:
        doc = await (await http.get(f"{media_server.url}/openapi.json")).json()
        assert doc["openapi"].startswith("3.")
        # A bystander session (a real, connected caller), made before the fuzzing, that must be untouched by it.
        bystander = WhipClient(media_server.url)
        mine = await bystander.connect(WavSource())
        sid = mine.session_id

        calls = await asyncio.to_thread(fuzz, media_server.url, doc)
        operations = {f"{method.upper()} {path}" for path, item in doc["paths"].items()
                      for method in item if method != "parameters"}
        assert len(operations) >= 16, operations  # README: 16 operations
        assert set(calls) == operations, sorted(operations - set(calls))  # every one fuzzed
        print(f"\nfuzzed {sum(calls.values())} requests over {len(calls)} operations: {calls}")

        # The bystander still works: listening off/on, GET, and it is still connected.
        for path, expected in (("stop", False), ("start", True)):
            resp = await http.post(f"{media_server.url}/listening/{path}", json={"session_id": sid}, headers=mine.headers)
            assert resp.status == 200 and (await resp.json())["listening"] is expected
        state = await (await http.get(f"{media_server.url}/sessions/{sid}", headers=mine.headers)).json()
        assert state["state"] == "connected" and state["listening"] is True
        assert sid in media_server.media.peers
        assert (await http.get(f"{media_server.url}/healthz")).status == 200
        assert bystander.pc.connectionState == "connected"
        await bystander.close()


def test_openapi_describes_every_route_of_the_app() -> None:
    from voxline.config import Settings
    from voxline.media.app import create_app
    from voxline.media.openapi import build_openapi
    from voxline.media.server import MediaServer

    app = create_app(MediaServer(Settings(), bus=None), Settings())  # type: ignore[arg-type]
    doc = build_openapi()
    routed = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter", "")
        path = path.replace("{name:[A-Za-z0-9_.-]+}", "{name}")
        if route.method != "HEAD":
            routed.add((route.method.lower(), path))
    described = {(m, p) for p, item in doc["paths"].items() for m in item if m != "parameters"}
    assert routed == described, (routed ^ described)
    for item in doc["paths"].values():
        for method, op in item.items():
            if method != "parameters":
                assert op["responses"], (method, op)


@pytest.mark.parametrize("media_server", [{"auth_token": "s3cret-fuzz-token"}], indirect=True)
async def test_openapi_follows_the_auth_rules(media_server) -> None:
    async with aiohttp.ClientSession() as http:
        assert (await http.get(f"{media_server.url}/openapi.json")).status == 401
        ok = await http.get(f"{media_server.url}/openapi.json",
                            headers={"Authorization": "Bearer s3cret-fuzz-token"})
        doc = await ok.json()
        assert doc["security"] == [{"bearer": []}]
        assert "401" in doc["paths"]["/whip"]["post"]["responses"]
        assert doc["paths"]["/healthz"]["get"]["security"] == []


# -- the events WebSocket under hostile clients ------------------------------------------------
import random  # noqa: E402

from voxline.media.events_ws import MAX_CLIENT_BURST, MAX_CLIENT_MESSAGE  # noqa: E402


def ws_messages(rng: random.Random) -> list[str | bytes]:
    """A batch of hostile client messages: random text (any code point), bytes, JSON-ish, pings."""
    def one() -> str | bytes:
        kind = rng.randrange(5)
        n = rng.choice([0, 1, 10, 300, MAX_CLIENT_MESSAGE // 4])  # under the size cap (tested apart)
        if kind == 0:
            return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0xD800)])) for _ in range(n))
        if kind == 1:
            return rng.randbytes(n)
        if kind == 2:
            return '{"type":' + rng.choice(['"ping"', '"session.end"', "null", "[" * 200, '"x"']) + "}"
        if kind == 3:
            return '{"type":"ping"}'
        return ""
    return [one() for _ in range(rng.randrange(1, 20))]


SECRETS: dict[str, dict[str, str]] = {}  # session ID -> the headers with its secret


async def _bystander(http: aiohttp.ClientSession, url: str) -> tuple[str, Any, aiohttp.ClientWebSocketResponse]:
    sdp, pc = await make_offer()
    resp = await post_offer(http, url, sdp)
    sid = resp.headers["X-Session-ID"]
    SECRETS[sid] = {"X-Session-Token": resp.headers["X-Session-Token"]}
    ws = await http.ws_connect(f"{url}/sessions/{sid}/events", headers=SECRETS[sid])
    await asyncio.wait_for(ws.receive_json(), 5)
    return sid, pc, ws


async def _still_works(http: aiohttp.ClientSession, url: str, sid: str, ws: aiohttp.ClientWebSocketResponse) -> None:
    resp = await http.post(f"{url}/listening/stop", json={"session_id": sid}, headers=SECRETS[sid])
    assert resp.status == 200
    while True:  # the bystander's socket still carries its own events
        got = await asyncio.wait_for(ws.receive_json(), 5)
        if got.get("type") in ("log", "listening") and got["session_id"] == sid:
            break
    await http.post(f"{url}/listening/start", json={"session_id": sid}, headers=SECRETS[sid])


async def test_events_websocket_ignores_arbitrary_messages(media_server) -> None:
    url = media_server.url
    async with aiohttp.ClientSession() as http:
        sid, pc, bystander = await _bystander(http, url)
        target, pc2, _ = await _bystander(http, url)
        rng = random.Random(6)
        samples = [ws_messages(rng) for _ in range(15)]
        for batch in samples:
            async with http.ws_connect(f"{url}/sessions/{target}/events", headers=SECRETS[target]) as ws:
                for m in batch:
                    await (ws.send_str(m) if isinstance(m, str) else ws.send_bytes(m))
                await ws.send_str('{"type":"ping"}')
                while (await asyncio.wait_for(ws.receive_json(), 5))["type"] != "pong":
                    pass
        await _still_works(http, url, sid, bystander)
        assert media_server.media.registry.get(target).state.value == "connected"
        await bystander.close()
        await asyncio.sleep(0.1)
        assert len(media_server.media.watchers.get(target, ())) <= 1  # the closed ones are gone
        await pc.close()
        await pc2.close()


async def test_events_websocket_closes_oversize_and_floods(media_server) -> None:
    url = media_server.url
    async with aiohttp.ClientSession() as http:
        sid, pc, bystander = await _bystander(http, url)
        target, pc2, _ = await _bystander(http, url)
        async with http.ws_connect(f"{url}/sessions/{target}/events", headers=SECRETS[target]) as ws:
            await ws.send_str("x" * (MAX_CLIENT_MESSAGE + 1))
            while (msg := await asyncio.wait_for(ws.receive(), 5)).type == aiohttp.WSMsgType.TEXT:
                pass
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009, msg
        async with http.ws_connect(f"{url}/sessions/{target}/events", headers=SECRETS[target]) as ws:
            for _ in range(MAX_CLIENT_BURST * 3):
                if ws.closed:
                    break
                await ws.send_str('{"type":"ping"}')
            while (msg := await asyncio.wait_for(ws.receive(), 5)).type == aiohttp.WSMsgType.TEXT:
                pass
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008, msg
        # A normal client (a ping every few seconds) is never closed for its rate.
        async with http.ws_connect(f"{url}/sessions/{target}/events", headers=SECRETS[target]) as ws:
            for _ in range(5):
                await ws.send_str('{"type":"ping"}')
                await asyncio.sleep(0.05)
            while (await asyncio.wait_for(ws.receive_json(), 5))["type"] != "pong":
                pass
            assert not ws.closed
        await _still_works(http, url, sid, bystander)
        await bystander.close()
        await pc.close()
        await pc2.close()


async def test_every_post_route_answers_413_for_a_huge_body(media_server) -> None:
    big = b"x" * (media_server.settings.max_body_bytes + 1)
    async with aiohttp.ClientSession() as http:
        for path, ctype in (("/whip", "application/sdp"), ("/listening/start", "application/json"),
                            ("/listening/stop", "application/json")):
            resp = await http.post(media_server.url + path, data=big, headers={"Content-Type": ctype})
            assert resp.status == 413, (path, resp.status)
            body = await resp.json()
            assert set(body) == {"error", "detail"}
        sid = "session_1700000000000_" + "a" * 16
        resp = await http.patch(f"{media_server.url}/whip/{sid}", data=big,
                                headers={"Content-Type": "application/trickle-ice-sdpfrag"})
        assert resp.status in (405, 413)


async def test_sdp_with_too_many_m_lines_or_long_lines_is_400(media_server) -> None:
    sdp, pc = await make_offer()
    await pc.close()
    lines = sdp.split("\r\n")
    many = "\r\n".join(lines + ["m=audio 9 UDP/TLS/RTP/SAVPF 111"] * 20)
    long = "\r\n".join(lines[:3] + ["a=x-long:" + "y" * 5000] + lines[3:])
    async with aiohttp.ClientSession() as http:
        for offer in (many, long):
            resp = await post_offer(http, media_server.url, offer)
            assert resp.status == 400 and (await resp.json())["error"] == "bad_sdp"
    assert media_server.media.registry.live_count() == 0


async def test_oversize_request_line_and_headers_are_refused_before_any_handler(media_server) -> None:
    """aiohttp's parser limits (8190-byte line and header field): a 4xx before any handler runs.

    Not JSON: aiohttp's HTTP parser answers these itself, in plain text, before the app's
    middleware sees a request. What is checked is the status and that the server goes on
    serving.
    """
    host, port = media_server.url.removeprefix("http://").split(":")
    for request in (f"GET /{'a' * 10_000} HTTP/1.1\r\nHost: x\r\n\r\n",
                    f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 10_000}\r\n\r\n",
                    "GARBAGE\r\n\r\n"):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request.encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        status = int(head.split(b" ", 2)[1])
        assert status in (400, 413, 414, 431), head[:200]
    async with aiohttp.ClientSession() as http:
        assert (await http.get(f"{media_server.url}/healthz")).status == 200
