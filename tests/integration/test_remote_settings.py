"""The remote back-ends send what the settings say (#18.5): model names, language, one key per service.

A recording vendor on loopback (an aiohttp app at the model boundary) answers the three
OpenAI routes and keeps what each request carried.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from voxline.bench.system import free_port
from voxline.config import Settings
from voxline.services.factory import build_llm, build_stt, build_tts


@pytest.fixture
async def vendor() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def stt(request: web.Request) -> web.Response:
        form = await request.post()
        seen.append({"route": "stt", "auth": request.headers.get("Authorization"),
                     "fields": {k: v for k, v in form.items() if k != "file"}})
        return web.json_response({"text": "hello"})

    async def llm(request: web.Request) -> web.StreamResponse:
        seen.append({"route": "llm", "auth": request.headers.get("Authorization"), "body": await request.json()})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {"choices": [{"index": 0, "delta": {"content": "Hi."}, "finish_reason": None}]}
        await resp.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
        return resp

    async def tts(request: web.Request) -> web.Response:
        seen.append({"route": "tts", "auth": request.headers.get("Authorization"), "body": await request.json()})
        return web.Response(body=bytes(4800), content_type="application/octet-stream")

    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", stt)
    app.router.add_post("/v1/chat/completions", llm)
    app.router.add_post("/v1/audio/speech", tts)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def _use_all(settings: Settings) -> None:
    stt, llm, tts = build_stt(settings), build_llm(settings), build_tts(settings)
    try:
        assert await stt.transcribe(bytes(16_000)) == "hello"
        assert "".join([d async for d in llm.stream([{"role": "user", "content": "hi"}])]).strip() == "Hi."
        assert b"".join([c async for c in tts.synthesize("Hello there.")])
    finally:
        for model in (stt, llm, tts):
            await model.close()


async def test_each_service_gets_its_model_language_and_key(vendor) -> None:  # type: ignore[no-untyped-def]
    url, seen = vendor
    await _use_all(Settings(stt="openai", llm="openai", tts="openai", stt_url=url, llm_url=url, tts_url=url,
                            stt_model="whisper-large-v3", language="de", llm_model="gpt-4o-mini",
                            tts_model="gpt-4o-mini-tts", tts_voice="alloy",
                            api_key="shared", stt_api_key="k-stt", tts_api_key="k-tts"))
    by_route = {s["route"]: s for s in seen}
    assert by_route["stt"]["fields"]["model"] == "whisper-large-v3" and by_route["stt"]["fields"]["language"] == "de"
    assert by_route["stt"]["auth"] == "Bearer k-stt"
    assert by_route["llm"]["body"]["model"] == "gpt-4o-mini" and by_route["llm"]["auth"] == "Bearer shared"
    assert by_route["tts"]["body"]["model"] == "gpt-4o-mini-tts" and by_route["tts"]["body"]["voice"] == "alloy"
    assert by_route["tts"]["auth"] == "Bearer k-tts"


async def test_defaults_name_openais_models_and_an_empty_language_lets_the_vendor_detect(vendor) -> None:  # type: ignore[no-untyped-def]
    url, seen = vendor
    await _use_all(Settings(stt="openai", llm="openai", tts="openai", stt_url=url, llm_url=url, tts_url=url,
                            language=""))
    by_route = {s["route"]: s for s in seen}
    assert by_route["stt"]["fields"]["model"] == "whisper-1" and "language" not in by_route["stt"]["fields"]
    assert by_route["tts"]["body"]["model"] == "tts-1"
    assert all(s["auth"] is None for s in seen)  # no key configured: none sent
