"""The model services over real HTTP with the real models, and the remote back-ends that call them.

Each service app runs in-process on a loopback port around the session's already-loaded
model fixtures, so every model loads once per test run.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import time
import wave
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web

from metrics_text import parse_metrics
from sentences import STATEMENTS
from voxline.audio.resample import resample_s16
from voxline.config import Settings
from voxline.modelserver.app import create_service_app, serve
from voxline.services.base import ServiceError
from voxline.services.llm.openai import OpenAILLM
from voxline.services.stt.openai import OpenAISTT
from voxline.services.tts.openai import OpenAITTS

pytestmark = pytest.mark.models

STT_TEXT = STATEMENTS[0]  # "Please turn on the kitchen lights."
TTS_TEXT = "The weather is sunny today."
HI: list[dict[str, str]] = [{"role": "user", "content": "Say hello in one short sentence."}]


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def running(kind: str, backend: Any, settings: Settings | None = None,
                  **kw: Any) -> AsyncIterator[str]:
    runner, url = await start(create_service_app(kind, backend, settings or Settings(), **kw))
    try:
        yield url
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module")
async def stt_url(stt: Any) -> AsyncIterator[str]:
    async for url in running("stt", stt):
        yield url


@pytest_asyncio.fixture(scope="module")
async def llm_url(llm: Any) -> AsyncIterator[str]:
    async for url in running("llm", llm):
        yield url


@pytest_asyncio.fixture(scope="module")
async def tts_url(tts: Any) -> AsyncIterator[str]:
    async for url in running("tts", tts):
        yield url


@pytest_asyncio.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def wav_file(pcm: bytes, rate: int, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def form(audio: bytes | None, **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    if audio is not None:
        data.add_field("file", audio, filename="speech.wav", content_type="audio/wav")
    data.add_field("model", "whisper-1")
    for key, value in fields.items():
        data.add_field(key, value)
    return data


def words(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum() or c.isspace())


async def assert_error(resp: aiohttp.ClientResponse, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"] and err["type"]
    if code:
        assert err["code"] == code
    return err


# ---------------------------------------------------------------- STT

async def test_transcription_over_http(stt_url: str, http: aiohttp.ClientSession,
                                       speech: Callable[[str], bytes]) -> None:
    pcm = speech(STT_TEXT)
    async with http.post(f"{stt_url}/v1/audio/transcriptions", data=form(wav_file(pcm, 16_000))) as resp:
        assert resp.status == 200, await resp.text()
        text = (await resp.json())["text"]
    assert "kitchen" in words(text) and "lights" in words(text), text

    # Stereo 48 kHz goes through mono mixing and resampling; verbose_json reports the duration.
    mono48 = np.frombuffer(resample_s16(pcm, 16_000, 48_000), dtype=np.int16)
    stereo = np.repeat(mono48, 2).tobytes()
    async with http.post(f"{stt_url}/v1/audio/transcriptions",
                         data=form(wav_file(stereo, 48_000, channels=2), response_format="verbose_json")) as resp:
        body = await resp.json()
    assert "kitchen" in words(body["text"]), body
    assert abs(body["duration"] - len(pcm) / 32_000) < 0.05

    async with http.post(f"{stt_url}/v1/audio/transcriptions",
                         data=form(wav_file(pcm, 16_000), response_format="text", language="en")) as resp:
        assert resp.content_type == "text/plain"
        assert "kitchen" in words(await resp.text())


async def test_openai_stt_backend(stt_url: str, speech: Callable[[str], bytes]) -> None:
    for base in (stt_url, f"{stt_url}/v1/"):
        client = OpenAISTT(base, timeout_s=20)
        try:
            text = await client.transcribe(speech(STT_TEXT))
        finally:
            await client.close()
        assert "kitchen" in words(text) and "lights" in words(text), text


# ---------------------------------------------------------------- LLM

async def test_chat_completion(llm_url: str, http: aiohttp.ClientSession) -> None:
    body = {"model": "smollm2-135m-instruct", "messages": HI, "max_tokens": 24}
    async with http.post(f"{llm_url}/v1/chat/completions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        out = await resp.json()
    assert out["object"] == "chat.completion"
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    assert 0 < out["usage"]["completion_tokens"] <= 24
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]


async def test_chat_completion_stream(llm_url: str, http: aiohttp.ClientSession) -> None:
    body = {"messages": HI, "max_tokens": 24, "stream": True, "stream_options": {"include_usage": True}}
    started, first = time.perf_counter(), None
    events: list[str] = []
    async with http.post(f"{llm_url}/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if not line:
                continue
            assert line.startswith("data: "), line
            events.append(line[6:])
            if first is None and '"content": "' in line and '"content": ""' not in line:
                first = time.perf_counter() - started
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.strip()
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    print(f"\nfirst SSE token over HTTP: {first * 1000:.0f} ms")


async def test_openai_llm_backend(llm_url: str) -> None:
    client = OpenAILLM(f"{llm_url}/v1", max_tokens=24, timeout_s=20)
    started, first, deltas = time.perf_counter(), None, []
    try:
        async for delta in client.stream(HI):
            first = first or time.perf_counter() - started
            deltas.append(delta)
    finally:
        await client.close()
    assert len(deltas) > 1 and "".join(deltas).strip()
    print(f"\nOpenAILLM first delta: {first * 1000:.0f} ms, {len(deltas)} deltas")


async def test_cancelling_llm_consumer_stops_generation(llm: Any, llm_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voxline.modelserver")
    client = OpenAILLM(llm_url, max_tokens=400, timeout_s=20)
    got = asyncio.Event()
    long_story = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]

    async def consume() -> None:
        async for _ in client.stream(long_story):
            got.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got.wait(), 20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    try:
        record = None
        for _ in range(100):
            record = next((r for r in caplog.records if getattr(r, "outcome", None) == "client_disconnected"), None)
            if record:
                break
            await asyncio.sleep(0.05)
        assert record is not None, "server did not notice the disconnect"
        assert record.tokens < 100  # stopped long before max_tokens
        # The model thread gives up at its next token: it goes idle, and the next turn is served
        # (how fast is a benchmark figure, not asserted here).
        deadline = asyncio.get_running_loop().time() + 30
        while llm.thread.busy and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert not llm.thread.busy, "the model thread kept generating for a gone client"
        got_next = [delta async for delta in client.stream(HI, max_tokens=2)]
        assert got_next
    finally:
        await client.close()


# ---------------------------------------------------------------- TTS

async def test_speech_pcm_streams_24k(tts_url: str, http: aiohttp.ClientSession, stt: Any) -> None:
    body = {"model": "piper", "input": f"{TTS_TEXT} It might rain tomorrow.", "voice": "en_US-joe-medium",
            "response_format": "pcm"}
    started, first, chunks = time.perf_counter(), None, []
    async with http.post(f"{tts_url}/v1/audio/speech", json=body) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-Sample-Rate"] == "24000"
        assert resp.headers.get("Transfer-Encoding", "").lower() == "chunked"
        async for data in resp.content.iter_any():
            first = first or time.perf_counter() - started
            chunks.append(data)
    pcm = b"".join(chunks)
    assert len(pcm) % 2 == 0 and len(pcm) > 24_000  # over half a second of audio
    samples = np.frombuffer(pcm, dtype=np.int16)
    assert np.abs(samples).max() > 3000
    text = words(await stt.transcribe(resample_s16(pcm, 24_000, 16_000)))
    assert "weather" in text and "sunny" in text, text
    print(f"\nfirst TTS byte over HTTP: {first * 1000:.0f} ms, {len(chunks)} reads")


async def test_speech_wav(tts_url: str, http: aiohttp.ClientSession) -> None:
    body = {"input": TTS_TEXT, "voice": "alloy", "response_format": "wav"}
    async with http.post(f"{tts_url}/v1/audio/speech", json=body) as resp:
        assert resp.status == 200 and resp.content_type == "audio/wav"
        data = await resp.read()
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24_000, 1, 2)
        assert w.getnframes() > 12_000


async def test_openai_tts_backend(tts_url: str, stt: Any) -> None:
    client = OpenAITTS(tts_url, timeout_s=20)
    assert client.sample_rate == 24_000
    started, first, chunks = time.perf_counter(), None, []
    try:
        async for chunk in client.synthesize(TTS_TEXT):
            first = first or time.perf_counter() - started
            assert len(chunk) % 2 == 0
            chunks.append(chunk)
        assert [c async for c in client.synthesize("  ")] == []
    finally:
        await client.close()
    text = words(await stt.transcribe(resample_s16(b"".join(chunks), 24_000, 16_000)))
    assert "weather" in text and "sunny" in text, text
    print(f"\nOpenAITTS first chunk: {first * 1000:.0f} ms")


async def test_cancelling_tts_consumer_stops_synthesis(tts_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voxline.modelserver")
    client = OpenAITTS(tts_url, timeout_s=20)
    story = " ".join(f"This is sentence number {i} of a long reply." for i in range(40))
    got = asyncio.Event()

    async def consume() -> None:
        async for _ in client.synthesize(story):
            got.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(got.wait(), 20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        record = None
        for _ in range(100):
            record = next((r for r in caplog.records
                           if r.msg == "speech" and getattr(r, "outcome", None) == "client_disconnected"), None)
            if record:
                break
            await asyncio.sleep(0.05)
        assert record is not None, "server did not notice the disconnect"
        print(f"\ntts stopped after {record.audio_ms} ms of audio")
        assert record.audio_ms < 20_000  # the whole reply is ~100 s of audio
    finally:
        await client.close()


# ---------------------------------------------------------------- health, models, errors

async def test_models_and_health(stt_url: str, llm_url: str, tts_url: str, http: aiohttp.ClientSession,
                                  stt: Any, llm: Any, tts: Any) -> None:
    for url, backend in ((stt_url, stt), (llm_url, llm), (tts_url, tts)):
        async with http.get(f"{url}/v1/models") as resp:
            body = await resp.json()
        assert body["object"] == "list" and body["data"][0]["id"] == backend.name
        for path in ("/healthz", "/readyz"):
            async with http.get(url + path) as resp:
                assert resp.status == 200


async def test_not_ready_answers_503(tts: Any, http: aiohttp.ClientSession) -> None:
    async for url in running("tts", tts, ready=False):
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{url}/readyz") as resp:
            await assert_error(resp, 503)
        async with http.post(f"{url}/v1/audio/speech", json={"input": "Hi."}) as resp:
            await assert_error(resp, 503, "not_ready")


async def test_errors_are_openai_json(stt_url: str, llm_url: str, tts_url: str,
                                      http: aiohttp.ClientSession) -> None:
    stt_path, chat, speech_path = (f"{stt_url}/v1/audio/transcriptions", f"{llm_url}/v1/chat/completions",
                                   f"{tts_url}/v1/audio/speech")
    async with http.post(stt_path, data=form(None)) as resp:
        err = await assert_error(resp, 400, "missing_field")
        assert err["param"] == "file"
    async with http.post(stt_path, json={"file": "x"}) as resp:
        await assert_error(resp, 415)
    async with http.post(stt_path, data=form(b"not a wav file at all")) as resp:
        await assert_error(resp, 400, "invalid_audio")
    async with http.post(stt_path, data=form(wav_file(b"\0" * 3200, 16_000), response_format="srt")) as resp:
        await assert_error(resp, 400, "unsupported_response_format")
    async with http.post(chat, data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
        await assert_error(resp, 400, "invalid_json")
    async with http.post(chat, data=b"hello", headers={"Content-Type": "text/plain"}) as resp:
        await assert_error(resp, 415)
    async with http.post(chat, json={"model": "x"}) as resp:
        await assert_error(resp, 400, "missing_field")
    async with http.post(chat, json={"messages": [{"role": "wizard", "content": "hi"}]}) as resp:
        await assert_error(resp, 400)
    async with http.post(chat, json={"messages": HI, "max_tokens": -3}) as resp:
        await assert_error(resp, 400)
    async with http.post(chat, data=b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}',
                         headers={"Content-Type": "application/json"}) as resp:
        await assert_error(resp, 413)
    async with http.post(speech_path, json={"voice": "alloy"}) as resp:
        await assert_error(resp, 400, "missing_field")
    async with http.post(speech_path, json={"input": "Hi.", "response_format": "mp3"}) as resp:
        await assert_error(resp, 400, "unsupported_response_format")
    async with http.get(f"{llm_url}/v1/nope") as resp:
        await assert_error(resp, 404)
    async with http.get(chat) as resp:
        await assert_error(resp, 405)


async def test_bodies_in_pieces_and_size_limits(llm_url: str, stt_url: str, http: aiohttp.ClientSession) -> None:
    async def pieces(body: bytes, size: int, pause: float = 0.0) -> AsyncIterator[bytes]:
        for i in range(0, len(body), size):
            yield body[i:i + size]
            await asyncio.sleep(pause)

    # A JSON body that arrives in several TCP writes (chunked, no Content-Length) parses whole.
    body = json.dumps({"messages": HI, "max_tokens": 3}).encode()
    async with http.post(f"{llm_url}/v1/chat/completions", data=pieces(body, 10, 0.01),
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 200, await resp.text()
    # Over the limit without a Content-Length: caught while reading.
    big = b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    async with http.post(f"{llm_url}/v1/chat/completions", data=pieces(big, 256 * 1024),
                         headers={"Content-Type": "application/json"}) as resp:
        await assert_error(resp, 413, "request_too_large")
    async with http.post(f"{stt_url}/v1/audio/transcriptions", data=form(b"\0" * (26 * 1024 * 1024))) as resp:
        await assert_error(resp, 413, "request_too_large")


async def test_bearer_auth(llm: Any, http: aiohttp.ClientSession) -> None:
    async for url in running("llm", llm, Settings(api_key="s3cret")):
        async with http.post(f"{url}/v1/chat/completions", json={"messages": HI, "max_tokens": 2}) as resp:
            await assert_error(resp, 401, "invalid_api_key")
        async with http.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong"}) as resp:
            await assert_error(resp, 401)
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 200  # probes stay open
        bad = OpenAILLM(url, api_key="wrong", timeout_s=5)
        good = OpenAILLM(url, api_key="s3cret", timeout_s=20, max_tokens=4)
        try:
            with pytest.raises(ServiceError, match="401"):
                async for _ in bad.stream(HI):
                    pass
            assert [d async for d in good.stream(HI)]
        finally:
            await bad.close()
            await good.close()


# ---------------------------------------------------------------- failures of the service

async def test_hung_server_raises_service_error_in_time(speech: Callable[[str], bytes]) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    runner, url = await start(app)
    clients: list[Any] = [OpenAILLM(url, timeout_s=1.0), OpenAISTT(url, timeout_s=1.0), OpenAITTS(url, timeout_s=1.0)]
    try:
        calls = [lambda: _drain(clients[0].stream(HI)), lambda: clients[1].transcribe(speech(STT_TEXT)),
                 lambda: _drain(clients[2].synthesize("Hello there."))]
        for call in calls:
            started = time.perf_counter()
            with pytest.raises(ServiceError, match="timed out"):
                await asyncio.wait_for(call(), 5)
            assert time.perf_counter() - started < 2.5
    finally:
        release.set()
        for client in clients:
            await client.close()
        await runner.cleanup()


async def test_refused_connection_raises_service_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAILLM(f"http://127.0.0.1:{port}", timeout_s=2)
    try:
        with pytest.raises(ServiceError, match="llm service"):
            await _drain(client.stream(HI))
    finally:
        await client.close()


async def test_serve_loads_warms_and_stops() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    task = asyncio.create_task(serve("tts", Settings(tts="openai"), "127.0.0.1", port))
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"{url}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert not task.done(), task
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the tts service never became ready")
            async with http.post(f"{url}/v1/audio/speech", json={"input": "Hi.", "response_format": "pcm"}) as resp:
                assert resp.status == 200 and len(await resp.read()) > 2000
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http:
            await http.get(f"{url}/healthz")


async def _drain(stream: AsyncIterator[Any]) -> None:
    async for _ in stream:
        pass


async def test_metrics_count_requests_by_route_and_status(tts_url: str, http: aiohttp.ClientSession) -> None:
    """What Prometheus scrapes from a model service: requests, time, the queue, readiness.

    The server is the module's, so other tests' requests are counted too: compare before/after."""
    async def scrape() -> tuple[str, dict[str, float]]:
        async with http.get(f"{tts_url}/metrics") as resp:
            assert resp.status == 200
            body = await resp.text()
        return body, parse_metrics(body)

    _, before = await scrape()
    async with http.post(f"{tts_url}/v1/audio/speech", json={"model": "piper", "input": "Hi.", "voice": "en_US-joe-medium",
                                                              "response_format": "pcm"}) as resp:
        assert resp.status == 200
        await resp.read()
    async with http.post(f"{tts_url}/v1/audio/speech", json={"input": ""}) as resp:
        assert resp.status == 400
    async with http.get(f"{tts_url}/no/such/route") as resp:
        assert resp.status == 404
    text, got = await scrape()

    def added(name: str) -> float:
        return got.get(name, 0.0) - before.get(name, 0.0)

    assert added('voxline_model_requests_total{kind="tts",route="/v1/audio/speech",status="200"}') == 1
    assert added('voxline_model_requests_total{kind="tts",route="/v1/audio/speech",status="400"}') == 1
    assert added('voxline_model_requests_total{kind="tts",route="other",status="404"}') == 1  # bounded labels
    assert "/no/such/route" not in text
    assert got['voxline_model_ready{kind="tts"}'] == 1 and got['voxline_model_rejected_total{kind="tts"}'] == 0
    assert added('voxline_model_request_duration_seconds_count{kind="tts",route="/v1/audio/speech"}') == 2
    assert got["process_resident_memory_bytes"] > 0
