"""Remote STT: any OpenAI-compatible `/v1/audio/transcriptions` (our stt-service or a vendor)."""

from __future__ import annotations

import io
import math
import wave

import aiohttp

from voxline.services.base import Heard, ServiceError
from voxline.services.http_client import ServiceClient


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """s16le mono PCM as a WAV file, the one upload format every such server reads."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm[: len(pcm) - len(pcm) % 2])
    return buf.getvalue()


def _readings(value: object) -> tuple[tuple[str, float], ...]:
    """`voxline serve stt`'s other readings of the audio (a vendor sends none); bounded, malformed ones dropped."""
    if not isinstance(value, list):
        return ()
    return tuple((str(r[0])[:2000], float(r[1])) for r in value[:8]
                 if isinstance(r, list) and len(r) == 2 and isinstance(r[0], str)
                 and isinstance(r[1], int | float) and not isinstance(r[1], bool) and math.isfinite(r[1]))


class OpenAISTT:
    def __init__(self, base_url: str, api_key: str = "", timeout_s: float = 30.0, model: str = "whisper-1",
                 language: str = "en", retries: int = 2, retry_cap_s: float = 2.0) -> None:
        self.client = ServiceClient("stt", base_url, api_key, timeout_s, retries, retry_cap_s)
        self.model = model
        self.language = language  # empty: the vendor detects it
        self.name = f"openai-stt({self.client.base})"

    async def transcribe(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        if len(pcm) < sample_rate // 10 * 2:  # under 0.1 s: nothing to hear, skip the round trip
            return ""
        wav = wav_bytes(pcm, sample_rate)

        def form() -> aiohttp.FormData:  # built again for a retry: aiohttp sends a FormData once
            out = aiohttp.FormData()
            out.add_field("file", wav, filename="audio.wav", content_type="audio/wav")
            out.add_field("model", self.model)
            if self.language:
                out.add_field("language", self.language)
            out.add_field("response_format", "json")
            return out

        async with self.client.post("audio/transcriptions", form=form) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError as exc:
                raise ServiceError(f"stt service {resp.url} sent a reply that is not JSON") from exc
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise ServiceError(f"stt service {self.client.base} sent no 'text' in its reply")
        readings = _readings(body.get("voxline_readings"))
        return Heard(text.strip(), readings) if readings else text.strip()

    async def close(self) -> None:
        await self.client.close()
