"""The remote back-ends ask a busy model service again: a real loopback HTTP server answers
`429`/`503` with `Retry-After`, then 200; retries are bounded in number, wait and deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from voxline.bench.system import free_port
from voxline.services.base import ServiceError
from voxline.services.llm.openai import OpenAILLM
from voxline.services.stt.openai import OpenAISTT

SPEECH = b"\x01\x00" * 16_000  # 1 s of 16 kHz s16


class BusyService:
    """An OpenAI-compatible STT + LLM that answers `busy` times with `status` before serving."""

    def __init__(self, busy: int, status: int = 429, retry_after: str = "0.2") -> None:
        self.busy, self.status, self.retry_after = busy, status, retry_after
        self.requests: list[str] = []
        self.uploads: list[int] = []

    async def _busy(self, request: web.Request) -> web.Response | None:
        self.requests.append(request.path)
        if len(self.requests) <= self.busy:
            return web.json_response({"error": {"message": "model busy"}}, status=self.status,
                                     headers={"Retry-After": self.retry_after})
        return None

    async def stt(self, request: web.Request) -> web.Response:
        form = await request.post()  # read whole: a retried upload must arrive complete
        if (busy := await self._busy(request)) is not None:
            return busy
        self.uploads.append(len(form["file"].file.read()))  # type: ignore[union-attr]
        return web.json_response({"text": "hello there"})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        if (busy := await self._busy(request)) is not None:
            return busy
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in ("Hi", " you."):
            await resp.write(f"data: {json.dumps({'choices': [{'delta': {'content': piece}}]})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    runners = []

    async def start(service: BusyService) -> str:
        app = web.Application()
        app.router.add_post("/v1/audio/transcriptions", service.stt)
        app.router.add_post("/v1/chat/completions", service.chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_a_429_once_then_200_is_answered_with_the_whole_upload(serve: Any) -> None:
    service = BusyService(busy=1)
    stt = OpenAISTT(await serve(service), timeout_s=5)
    try:
        assert await stt.transcribe(SPEECH) == "hello there"
    finally:
        await stt.close()
    assert len(service.requests) == 2 and stt.client.retried == 1
    assert service.uploads == [44 + len(SPEECH)]  # the form was built again, not sent empty


async def test_a_streamed_reply_after_a_503_and_the_loop_goes_on_while_waiting(serve: Any) -> None:
    service = BusyService(busy=2, status=503, retry_after="0.3")
    llm = OpenAILLM(await serve(service), timeout_s=5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        reply = "".join([d async for d in llm.stream([{"role": "user", "content": "Hi"}])])
    finally:
        task.cancel()
        await llm.client.close()
    assert reply == "Hi you." and len(service.requests) == 3
    assert ticks >= 20  # two 0.3 s waits: the event loop ran other work meanwhile


@pytest.mark.parametrize(("retry_after", "timeout_s", "tries"), [
    ("0.05", 5.0, 3),  # always busy: the first try and 2 retries, then the error
    ("30", 1.0, 1),  # a wait (capped at 2 s) past the 1 s deadline: no retry at all
    ("soon", 5.0, 3),  # an unreadable Retry-After: 1 s
])
async def test_retries_are_bounded_then_the_turn_fails_as_before(serve: Any, retry_after: str, timeout_s: float,
                                                                 tries: int) -> None:
    service = BusyService(busy=100, retry_after=retry_after)
    stt = OpenAISTT(await serve(service), timeout_s=timeout_s, retries=2, retry_cap_s=2.0)
    try:
        with pytest.raises(ServiceError, match="HTTP 429: model busy"):
            await stt.transcribe(SPEECH)
    finally:
        await stt.close()
    assert len(service.requests) == tries


async def test_other_errors_are_not_retried(serve: Any) -> None:
    service = BusyService(busy=1, status=500)
    stt = OpenAISTT(await serve(service), timeout_s=5)
    try:
        with pytest.raises(ServiceError, match="HTTP 500"):
            await stt.transcribe(SPEECH)
    finally:
        await stt.close()
    assert len(service.requests) == 1
