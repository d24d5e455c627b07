"""Remote TTS: any OpenAI-compatible `/v1/audio/speech`, raw 24 kHz PCM streamed as it comes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from voxline.audio.resample import StreamResampler
from voxline.services.http_client import ServiceClient

OPENAI_PCM_RATE = 24_000


class OpenAITTS:
    sample_rate: int = OPENAI_PCM_RATE

    def __init__(self, base_url: str, api_key: str = "", voice: str = "en_US-joe-medium",
                 timeout_s: float = 30.0, model: str = "piper", retries: int = 2, retry_cap_s: float = 2.0) -> None:
        self.client = ServiceClient("tts", base_url, api_key, timeout_s, retries, retry_cap_s)
        self.voice = voice
        self.model = model
        self.name = f"openai-tts({voice})"

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """s16le mono chunks at 24 kHz, each an even number of bytes, yielded as they arrive.

        OpenAI's `pcm` is 24 kHz by definition; a server that says otherwise in
        `X-Sample-Rate` is resampled here so the agent always gets `sample_rate`.
        """
        if not text.strip():
            return
        body = {"model": self.model, "input": text, "voice": self.voice, "response_format": "pcm"}
        async with self.client.post("audio/speech", stream=True, json=body) as resp:
            rate = _rate(resp.headers.get("X-Sample-Rate"))
            rs = StreamResampler(rate, self.sample_rate) if rate != self.sample_rate else None
            carry = b""
            async for data in resp.content.iter_any():
                data = carry + data
                cut = len(data) - len(data) % 2
                carry = data[cut:]
                if not cut:
                    continue
                if rs is None:
                    yield data[:cut]
                else:
                    out = rs.push(np.frombuffer(data[:cut], dtype=np.int16))
                    if out.size:
                        yield out.astype(np.int16, copy=False).tobytes()
            if rs is not None:
                tail = rs.push(np.zeros(0, dtype=np.int16), last=True)
                if tail.size:
                    yield tail.astype(np.int16, copy=False).tobytes()

    async def close(self) -> None:
        await self.client.close()


def _rate(header: str | None) -> int:
    try:
        rate = int(header) if header else OPENAI_PCM_RATE
    except ValueError:
        return OPENAI_PCM_RATE
    return rate if 8_000 <= rate <= 192_000 else OPENAI_PCM_RATE
