"""FIXED-RESPONSE BACK-ENDS, FOR THE CAPACITY BENCHMARK ONLY.

These stand in for STT, LLM and TTS so that a capacity run measures what one machine's
media server, bus, VAD and agent can carry (WebRTC, Opus, resampling, paced playout, turn
detection), not how fast three models share two cores. They do no model work at all: each
waits a fixed time and returns a fixed answer. Never use them to claim latency or quality.

- `FixedSTT`: returns a fixed sentence after a fixed delay.
- `FixedLLM`: streams a fixed reply, one word every few milliseconds.
- `FixedTTS`: returns a pre-synthesised sine sweep at 22,050 Hz for every sentence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from voxline.services.base import ChatMessage

LABEL = "FIXED-RESPONSE BACK-ENDS (BENCHMARK ONLY)"
TTS_RATE = 22_050


class FixedSTT:
    """Pretends to transcribe: waits `delay_s`, returns `text`."""

    name = "fixed-stt (benchmark only)"

    def __init__(self, text: str = "What is the weather like today?", delay_s: float = 0.3) -> None:
        self.text = text
        self.delay_s = delay_s

    async def transcribe(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        await asyncio.sleep(self.delay_s)
        return self.text

    async def close(self) -> None:
        return None


class FixedLLM:
    """Pretends to think: waits `first_token_s`, then streams `reply` word by word."""

    name = "fixed-llm (benchmark only)"

    def __init__(self, reply: str = "It is sunny and mild today. Enjoy your afternoon.",
                 first_token_s: float = 0.1, token_s: float = 0.015) -> None:
        self.reply = reply
        self.first_token_s = first_token_s
        self.token_s = token_s

    async def stream(self, messages: list[ChatMessage], max_tokens: int | None = None) -> AsyncIterator[str]:
        await asyncio.sleep(self.first_token_s)
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
            await asyncio.sleep(self.token_s)

    async def close(self) -> None:
        return None


def sine_sweep(seconds: float = 1.0, rate: int = TTS_RATE, f0: float = 300.0, f1: float = 900.0,
               amplitude: float = 0.3) -> bytes:
    """A linear sine sweep from `f0` to `f1` Hz, with 10 ms fades, as s16le mono PCM."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    wave = np.sin(phase) * amplitude
    fade = min(n // 2, int(0.01 * rate))
    ramp = np.linspace(0.0, 1.0, fade)
    wave[:fade] *= ramp
    wave[n - fade:] *= ramp[::-1]
    return (wave * 32767).astype("<i2").tobytes()


class FixedTTS:
    """Pretends to speak: waits `first_audio_s`, then yields the same sweep for any sentence."""

    name = "fixed-tts (benchmark only)"
    sample_rate = TTS_RATE

    def __init__(self, seconds: float = 1.0, first_audio_s: float = 0.05, chunk_s: float = 0.25) -> None:
        self.pcm = sine_sweep(seconds)
        self.first_audio_s = first_audio_s
        self.chunk_bytes = int(chunk_s * TTS_RATE) * 2

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        await asyncio.sleep(self.first_audio_s)
        for i in range(0, len(self.pcm), self.chunk_bytes):
            yield self.pcm[i:i + self.chunk_bytes]
            await asyncio.sleep(0)

    async def close(self) -> None:
        return None
