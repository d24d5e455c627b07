"""`POST /v1/audio/transcriptions`: OpenAI's transcription API over the embedded STT model."""

from __future__ import annotations

import asyncio
import io
import logging
import time
import wave

import numpy as np
from aiohttp import BodyPartReader, web

from voxline.audio.resample import resample_s16, to_mono_s16
from voxline.http_errors import ApiError
from voxline.modelserver.http import MAX_AUDIO_BYTES, STATE
from voxline.services.base import readings_of

log = logging.getLogger("voxline.modelserver")

FORMATS = ("json", "text", "verbose_json")
TARGET_RATE = 16_000


MIN_RATE, MAX_RATE = 8_000, 192_000  # what real recordings use; 100 Hz claims 83 minutes for 1 MB
MAX_CHANNELS = 8


def wav_header(data: bytes, max_seconds: float) -> tuple[int, int, int, int]:
    """(rate, channels, sample width, frames) of a WAV upload, checked against the limits
    before a byte of it is decoded: a header can claim hours of audio that resampling would pay for."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            frames = min(w.getnframes(), len(data) // max(1, width * channels))
    except (wave.Error, EOFError, ValueError) as exc:
        raise ApiError(400, "invalid_audio",
                       f"'file' is not a PCM WAV file the server can read ({exc}); send 8/16/24/32-bit "
                       "integer PCM WAV", param="file") from None
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ApiError(400, "invalid_audio", f"sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz", param="file")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ApiError(400, "invalid_audio", f"{channels} channels: 1 to {MAX_CHANNELS} are accepted", param="file")
    if frames / rate > max_seconds:
        raise ApiError(400, "audio_too_long", f"{frames / rate:.0f} s of audio: at most {max_seconds:.0f} s per request",
                       param="file")
    return rate, channels, width, frames


def decode_wav(data: bytes, max_seconds: float = 600.0) -> tuple[bytes, float]:
    """Any-rate, any-channel PCM WAV (8/16/24/32-bit) -> 16 kHz mono s16le, and its duration.

    Blocking (resampling a minute costs tens of ms): handlers call it in a thread.
    """
    rate, channels, width, _ = wav_header(data, max_seconds)
    with wave.open(io.BytesIO(data)) as w:
        frames = w.readframes(w.getnframes())
    usable = len(frames) - len(frames) % (width * channels)
    raw = frames[:usable]
    if width == 1:  # unsigned 8-bit
        samples = ((np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif width == 2:
        samples = np.frombuffer(raw, "<i2")
    elif width == 3:  # keep the top two bytes of each little-endian 24-bit sample
        samples = np.frombuffer(raw, np.uint8).reshape(-1, 3)[:, 1:].copy().view("<i2").reshape(-1)
    elif width == 4:
        samples = (np.frombuffer(raw, "<i4") >> 16).astype(np.int16)
    else:
        raise ApiError(400, "invalid_audio", f"unsupported WAV sample width {width}", param="file")
    mono = to_mono_s16(samples, channels)
    duration = mono.size / rate
    return resample_s16(mono.tobytes(), rate, TARGET_RATE), duration


async def _read_form(request: web.Request) -> tuple[bytes, dict[str, str]]:
    """The uploaded file and the text fields of a multipart form, with a size limit."""
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       f"expected Content-Type multipart/form-data, got {request.content_type or 'none'}")
    if request.content_length is not None and request.content_length > MAX_AUDIO_BYTES + 64 * 1024:
        raise ApiError(413, "request_too_large", f"upload over {MAX_AUDIO_BYTES} bytes")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise ApiError(400, "invalid_multipart", f"malformed multipart body: {exc}") from None
    audio: bytes | None = None
    fields: dict[str, str] = {}
    total = 0
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            chunks: list[bytes] = []
            while chunk := await part.read_chunk(64 * 1024):
                total += len(chunk)
                if total > MAX_AUDIO_BYTES:
                    raise ApiError(413, "request_too_large", f"upload over {MAX_AUDIO_BYTES} bytes")
                chunks.append(chunk)
            if part.name == "file":
                audio = b"".join(chunks)
            elif len(fields) < 32:
                fields[part.name] = b"".join(chunks).decode("utf-8", "replace")
    except ApiError:
        raise
    except (ValueError, AssertionError, RuntimeError) as exc:
        raise ApiError(400, "invalid_multipart", f"malformed multipart body: {exc}") from None
    if audio is None:
        raise ApiError(400, "missing_field", "missing required field 'file'", param="file")
    return audio, fields


def _check_language(language: str, served: str | None) -> None:
    """The service transcribes in its `language` setting (None: detected): a request for another is refused."""
    from voxline.services.model_files import whisper_language

    asked = whisper_language(language)
    if asked is not None and served is not None and asked != served:
        raise ApiError(400, "unsupported_language",
                       f"language {language!r} is not supported: this service transcribes {served!r} only", param="language")


async def transcriptions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    audio, fields = await _read_form(request)
    fmt = fields.get("response_format", "json") or "json"
    if fmt not in FORMATS:
        raise ApiError(400, "unsupported_response_format",
                       f"response_format {fmt!r} is not supported (use one of {', '.join(FORMATS)})", param="response_format")
    _check_language(fields.get("language", ""), getattr(state.backend, "language", "en"))
    limit = state.settings.stt_max_audio_s
    wav_header(audio, limit)  # a lying header is a 400 at once, before any work
    pcm, duration = await asyncio.to_thread(decode_wav, audio, limit)  # never on the event loop
    started = time.perf_counter()
    text = await state.backend.transcribe(pcm, TARGET_RATE)
    infer_ms = round((time.perf_counter() - started) * 1000)
    log.info("transcribed", extra={"audio_ms": round(duration * 1000), "infer_ms": infer_ms,
                                   "chars": len(text), "requested_model": fields.get("model")})
    if fmt == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    # Our own extension, ignored by other clients: the beam's other readings, the end of the
    # turn's evidence on a doubted last word (agent.endpoint.doubtful_ending), for OpenAISTT.
    extra = {"voxline_readings": [list(r) for r in readings_of(text)]} if readings_of(text) else {}
    if fmt == "verbose_json":
        return web.json_response({"task": "transcribe", "language": "english", "duration": round(duration, 3),
                                  "text": text, "segments": [], **extra})
    return web.json_response({"text": text, **extra})
