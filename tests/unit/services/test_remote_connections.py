"""The remote STT and TTS keep one connection across turns (no TCP setup per request), over real
loopback HTTP to `voxline serve`'s apps with fakes at the model boundary. The LLM's own case,
and a dropped stream closing its connection, are in tests/integration/test_remote_llm.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from voxline.config import Settings
from voxline.modelserver.app import create_service_app
from voxline.services.stt.openai import OpenAISTT
from voxline.services.tts.openai import OpenAITTS


class Voice:
    name = "piper-en_US-joe-medium"
    sample_rate = 22_050

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        for _ in range(3):  # three sentences' worth, streamed
            yield b"\x01\x00" * 22_050


class Ears:
    name = "whisper-tiny.en"

    async def transcribe(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        return "hello"


async def served(kind: str, backend: Any, peers: list[Any]) -> web.AppRunner:
    @web.middleware
    async def peer(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return await handler(request)

    app = create_service_app(kind, backend, Settings())
    app.middlewares.insert(0, peer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def test_tts_turns_reuse_one_connection() -> None:
    peers: list[Any] = []
    runner = await served("tts", Voice(), peers)
    tts = OpenAITTS(f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        for _ in range(3):
            audio = b"".join([pcm async for pcm in tts.synthesize("Hello there.")])
            assert len(audio) > 3 * 22_050  # all three sentences, at 24 kHz
        assert len(peers) == 3 and len(set(peers)) == 1, peers
    finally:
        await tts.close()
        await runner.cleanup()


async def test_stt_turns_reuse_one_connection() -> None:
    peers: list[Any] = []
    runner = await served("stt", Ears(), peers)
    stt = OpenAISTT(f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        for _ in range(3):
            assert await stt.transcribe(b"\x01\x00" * 16_000) == "hello"
        assert len(peers) == 3 and len(set(peers)) == 1, peers
    finally:
        await stt.close()
        await runner.cleanup()
