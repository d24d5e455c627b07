"""Requests aiohttp's own parser rejects, sent over raw sockets to real servers.

Each kind (request line or header too long, bad method, bad header, bad chunked body, bad
Content-Length, a bad chunk sent after the headers) must get voxline's JSON error with its
status, close the connection, and log no traceback (`voxline.http_protocol`, the patch of
aiohttp that makes it so). Without the patch each answer is text/plain and each is logged
at ERROR with a traceback; without its body half, the bad chunk after the headers is never
answered (the handler waits for the dropped body until the client goes away).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from voxline.config import Settings
from voxline.modelserver.app import create_service_app

HOST = b"Host: 127.0.0.1\r\n"
CASES = {
    "request line too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", "line_too_long"),
    "header too long": (b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-Long: " + b"b" * 9000 + b"\r\n\r\n",
                        "line_too_long"),
    "bad method": (b"G@T /healthz HTTP/1.1\r\n" + HOST + b"\r\n", "bad_method"),
    "TLS on the HTTP port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, "bad_method"),
    "bad header": (b"GET /healthz HTTP/1.1\r\n" + HOST + b"Bad Header: y\r\n\r\n", "bad_header"),
    "bad chunked body": (b"POST /whip HTTP/1.1\r\n" + HOST + b"Content-Type: application/sdp\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", "bad_body"),
    "bad Content-Length": (b"POST /whip HTTP/1.1\r\n" + HOST + b"Content-Length: abc\r\n\r\n", "bad_body"),
    "not HTTP/1.x": (b"GET /healthz HTTP/9.9\r\n" + HOST + b"\r\n", "bad_request_line"),
}
BAD_CHUNK_LATER = (b"POST /whip HTTP/1.1\r\n" + HOST + b"Content-Type: application/sdp\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n", b"zz\r\nhello\r\n0\r\n\r\n")


async def exchange(url: str, *parts: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
    """Send `parts` (a beat apart) on one connection; read the answer until the server closes it."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(0.3)  # the headers are being handled when the rest arrives
            writer.write(part)
            await writer.drain()
        async with asyncio.timeout(timeout):  # the connection closes after an error answer
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records
           if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, bad
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("kind", CASES)
async def test_a_request_the_parser_rejects_gets_a_json_400_and_no_traceback(media_server, kind, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    request, code = CASES[kind]
    status, headers, body = await exchange(media_server.url, request)
    assert status == 400, (status, body)
    assert headers["Content-Type"].startswith("application/json"), headers
    assert set(body) == {"error", "detail"} and body["error"] == code and body["detail"], body
    no_traceback(caplog)
    assert any(r.name == "voxline.http" and r.levelno == logging.INFO for r in caplog.records)  # one line


async def test_a_bad_chunk_after_the_headers_is_answered_at_once_and_the_server_goes_on(media_server,
                                                                                        caplog) -> None:
    caplog.set_level(logging.DEBUG)
    status, headers, body = await exchange(media_server.url, *BAD_CHUNK_LATER)
    assert status == 400 and body == {"error": "bad_body", "detail": "Invalid character in chunk size"}, body
    assert headers.get("Connection") == "close", headers
    no_traceback(caplog)
    status, _, body = await exchange(media_server.url, b"GET /healthz HTTP/1.1\r\n" + HOST
                                     + b"Connection: close\r\n\r\n")
    assert status == 200, body


@pytest.fixture
async def model_server() -> AsyncIterator[str]:
    """A real `voxline serve llm` app; no request here reaches its model."""
    app = create_service_app("llm", SimpleNamespace(name="none"), Settings())
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_the_model_servers_answer_protocol_errors_in_openais_shape(model_server, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    status, _, body = await exchange(model_server, CASES["bad header"][0])
    assert status == 400 and body["error"]["code"] == "bad_header" and body["error"]["message"], body
    head = (b"POST /v1/chat/completions HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    status, _, body = await exchange(model_server, head, b"zz\r\n{}\r\n0\r\n\r\n")
    assert status == 400 and body["error"]["code"] == "bad_body", body
    no_traceback(caplog)


async def test_a_bug_outside_every_middleware_is_still_a_json_500(media_server, monkeypatch) -> None:
    """An exception the error middleware cannot see (here in the CORS middleware, which wraps
    it) reaches aiohttp's own 500: JSON too, and the bug keeps its ERROR log."""
    from voxline.media import middleware

    def broken(*args: Any) -> Any:
        raise RuntimeError("internal detail that must stay inside")

    monkeypatch.setattr(middleware, "allowed_origin", broken)
    status, headers, body = await exchange(media_server.url, b"GET /healthz HTTP/1.1\r\n" + HOST + b"\r\n")
    assert status == 500 and body == {"error": "internal", "detail": "internal server error"}, body
    assert headers["Content-Type"].startswith("application/json"), headers
