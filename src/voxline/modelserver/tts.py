"""`POST /v1/audio/speech`: OpenAI's speech API over the embedded TTS voice.

`pcm` is OpenAI's raw format (s16le mono at 24 kHz), streamed with chunked transfer as each
sentence is synthesized, so a client can start playing after the first sentence. `wav` is
buffered into one file with an exact header: it is for tools, not for low latency.
"""

from __future__ import annotations

import io
import logging
import time
import wave
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from aiohttp import web

from voxline.audio.resample import StreamResampler
from voxline.http_errors import ApiError
from voxline.modelserver.http import MAX_SPEECH_INPUT_CHARS, STATE, number, read_json, string

log = logging.getLogger("voxline.modelserver")

OUT_RATE = 24_000  # OpenAI's pcm rate
FORMATS = ("pcm", "wav")
OPENAI_VOICES = {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer",
                 "verse"}


def voice_names(backend: Any) -> set[str]:
    """Names accepted for the one served voice: its ids, 'default', and OpenAI's stock names."""
    name = str(getattr(backend, "name", ""))
    ids = {name, name.removeprefix("piper-"), "default"}
    return {n for n in ids if n} | OPENAI_VOICES


def parse_request(body: dict[str, Any], backend: Any) -> tuple[str, str]:
    text = string(body, "input", required=True) or ""
    if not text.strip():
        raise ApiError(400, "invalid_value", "'input' must not be empty", param="input")
    if len(text) > MAX_SPEECH_INPUT_CHARS:
        raise ApiError(400, "invalid_value",
                       f"'input' is longer than {MAX_SPEECH_INPUT_CHARS} characters", param="input")
    voice = string(body, "voice")
    if voice is not None and voice not in voice_names(backend):
        raise ApiError(400, "invalid_value",
                       f"unknown voice {voice!r}; this server speaks {backend.name!r}", param="voice")
    fmt = string(body, "response_format", "wav") or "wav"
    if fmt not in FORMATS:
        raise ApiError(400, "unsupported_response_format",
                       f"response_format {fmt!r} is not supported (use pcm or wav)", param="response_format")
    number(body, "speed", 0.25, 4.0)  # validated; the embedded voice speaks at its natural rate
    string(body, "model")
    return text, fmt


async def resampled(chunks: AsyncIterator[bytes], from_rate: int) -> AsyncIterator[bytes]:
    """The voice's chunks at 24 kHz, without clicks at sentence edges."""
    rs = StreamResampler(from_rate, OUT_RATE)
    async for pcm in chunks:
        out = rs.push(np.frombuffer(pcm, dtype=np.int16))
        if out.size:
            yield out.astype(np.int16, copy=False).tobytes()
    tail = rs.push(np.zeros(0, dtype=np.int16), last=True)
    if tail.size:
        yield tail.astype(np.int16, copy=False).tobytes()


async def _close(*streams: AsyncIterator[bytes]) -> None:
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]


async def speech(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    text, fmt = parse_request(await read_json(request), state.backend)
    chunks = state.backend.synthesize(text)
    audio = resampled(chunks, int(state.backend.sample_rate))
    headers = {"X-Sample-Rate": str(OUT_RATE), "X-Channels": "1", "X-Sample-Format": "s16le"}
    started = time.perf_counter()
    if fmt == "wav":
        try:
            pcm = b"".join([c async for c in audio])
        finally:
            await _close(audio, chunks)
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(OUT_RATE)
            w.writeframes(pcm)
        log.info("speech", extra={"format": fmt, "chars": len(text), "audio_ms": len(pcm) * 500 // OUT_RATE,
                                  "total_ms": round((time.perf_counter() - started) * 1000)})
        return web.Response(body=buf.getvalue(), content_type="audio/wav", headers=headers)

    resp = web.StreamResponse(headers={**headers, "Content-Type": "audio/pcm"})
    resp.enable_chunked_encoding()
    first_ms, sent, outcome = None, 0, "done"
    try:
        async for pcm in audio:
            if not sent:
                await resp.prepare(request)  # headers go out with the first audio, not before
                first_ms = round((time.perf_counter() - started) * 1000)
            await resp.write(pcm)
            sent += len(pcm)
        if not sent:
            await resp.prepare(request)
        await resp.write_eof()
    except (ConnectionError, OSError):
        outcome = "client_disconnected"
    except Exception as exc:
        if not resp.prepared:
            raise  # nothing sent yet: the error middleware answers with JSON
        outcome = "model_error"
        log.warning("speech stream failed", extra={"error": repr(exc)})
        if request.transport is not None:
            request.transport.close()  # abort, so the client sees an error, not a short clean reply
    finally:
        await _close(audio, chunks)
    log.info("speech", extra={"format": fmt, "chars": len(text), "first_byte_ms": first_ms,
                              "audio_ms": sent * 500 // OUT_RATE, "outcome": outcome,
                              "total_ms": round((time.perf_counter() - started) * 1000)})
    return resp
