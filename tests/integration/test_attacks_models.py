"""Hostile clients of `voxline serve` on loopback: a WAV whose header lies about its rate
(the STT rate bomb), uploads past the length cap, oversized prompts, and a flood of long
requests while a small one and the health probe must still be answered."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest_asyncio

from tests.integration.test_model_services import form, running, wav_file
from voxline.config import Settings

SLOW_S = 1.0  # the stand-in model's time per request


class SlowSTT:
    """A transcriber that takes SLOW_S in a thread per request (the model boundary only)."""

    name = "slow-stt"

    async def transcribe(self, pcm: bytes, rate: int) -> str:
        await asyncio.to_thread(time.sleep, SLOW_S)
        return f"{len(pcm) // 2 / rate:.1f} seconds"


@pytest_asyncio.fixture
async def slow_url() -> AsyncIterator[str]:
    async for url in running("stt", SlowSTT(), Settings(model_queue=2, stt_max_audio_s=60)):
        yield url


async def test_stt_rate_bomb_is_refused_from_its_header_at_once(stt: Any) -> None:
    """1 MB of samples claiming 100 Hz (83 minutes once resampled to 16 kHz): a 400 from the header."""
    bomb = wav_file(np.zeros(500_000, dtype=np.int16).tobytes(), rate=100)
    long = wav_file(np.zeros(16_000 * 61, dtype=np.int16).tobytes(), rate=16_000)  # 61 s over a 60 s cap
    many = wav_file(np.zeros(16 * 1000, dtype=np.int16).tobytes(), rate=16_000, channels=16)
    async for url in running("stt", stt, Settings(stt_max_audio_s=60)):
        async with aiohttp.ClientSession() as http:
            for audio, code in ((bomb, "invalid_audio"), (long, "audio_too_long"), (many, "invalid_audio")):
                started = time.monotonic()
                async with http.post(f"{url}/v1/audio/transcriptions", data=form(audio)) as resp:
                    body = await resp.json()
                assert resp.status == 400 and body["error"]["code"] == code, body
                assert time.monotonic() - started < 1.0  # refused from the header, no decoding paid
            async with http.get(f"{url}/healthz") as resp:
                assert resp.status == 200


async def test_flood_of_long_requests_leaves_a_small_one_and_health_answered(slow_url: str) -> None:
    audio = wav_file(np.zeros(16_000 * 50, dtype=np.int16).tobytes(), rate=16_000)  # 50 s each
    small = wav_file(np.zeros(16_000, dtype=np.int16).tobytes(), rate=16_000)
    async with aiohttp.ClientSession() as http:
        async def one(data: bytes) -> tuple[int, str | None]:
            async with http.post(f"{slow_url}/v1/audio/transcriptions", data=form(data)) as resp:
                await resp.read()
                return resp.status, resp.headers.get("Retry-After")

        flood = [asyncio.create_task(one(audio)) for _ in range(20)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        async with http.get(f"{slow_url}/healthz") as resp:
            assert resp.status == 200
        health_s = time.monotonic() - started
        results = await asyncio.gather(*flood)
        refused = [r for r in results if r[0] == 429]
        assert len(refused) >= 20 - 2 - 1, results  # the queue holds 2; the rest are told to retry
        assert all(after for _, after in refused)
        # the small request (as the agent's client would: honour Retry-After once) is answered
        status, after = await one(small)
        if status == 429:
            await asyncio.sleep(float(after or 1))
            status, _ = await one(small)
        assert status == 200
    assert health_s < 0.5, health_s  # the probe never queues behind the models


async def test_oversized_prompt_is_400(llm: Any) -> None:
    async for url in running("llm", llm, Settings(llm_max_prompt_chars=1000)):
        async with aiohttp.ClientSession() as http:
            body = {"model": "x", "messages": [{"role": "user", "content": "word " * 400}]}
            async with http.post(f"{url}/v1/chat/completions", json=body) as resp:
                got = await resp.json()
            assert resp.status == 400 and got["error"]["code"] == "prompt_too_long", got
            body["max_tokens"] = 100_000
            body["messages"] = [{"role": "user", "content": "hi"}]
            async with http.post(f"{url}/v1/chat/completions", json=body) as resp:
                assert resp.status == 400


async def test_serving_off_loopback_without_an_api_key_warns_loudly(caplog: Any) -> None:
    """#14.5: `voxline serve` off loopback without `api_key` says so before anything is bound
    (the task is cancelled while the model loads, so no port ever opens on 0.0.0.0)."""
    import logging

    from voxline.bench.system import free_port
    from voxline.modelserver.app import serve

    async def started(host: str, settings: Settings) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="voxline.modelserver"):
            task = asyncio.create_task(serve("tts", settings, host, free_port()))
            await asyncio.sleep(0)  # up to loading the model (a thread): the warning comes first
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return [r.getMessage() for r in caplog.records if "WITHOUT AN API KEY" in r.getMessage()]

    assert await started("0.0.0.0", Settings())  # anyone who reaches the port could use the model
    assert not await started("0.0.0.0", Settings(api_key="k3y"))
    assert not await started("127.0.0.1", Settings())
    assert Settings().host == "127.0.0.1"  # and loopback is the default bind
