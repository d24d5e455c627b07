"""Helpers the media and spoken tests share: the caller's microphone samples, the words heard, a poll."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import numpy as np

from voxline.audio.resample import resample_s16
from voxline.client.audio import RATE


def words(text: str) -> set[str]:
    """The words of `text` longer than two letters, lower case: what a check of meaning needs."""
    return {w for w in re.findall(r"[a-z']+", text.lower()) if len(w) > 2}


def at48k(pcm16k: bytes, pad_s: float = 0.3) -> np.ndarray:
    """16 kHz speech as the caller's 48 kHz microphone samples, after `pad_s` of silence."""
    pad = np.zeros(int(pad_s * RATE), dtype=np.int16)
    speech = np.frombuffer(resample_s16(pcm16k, 16_000, RATE), dtype=np.int16)
    return np.concatenate([pad, speech])


def tone(freq: float = 440.0, seconds: float = 1.0, amplitude: int = 8_000, rate: int = RATE) -> np.ndarray:
    """A sine as mono s16 samples (48 kHz unless told)."""
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency in `samples` (Hann window)."""
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum)) * rate / x.size


async def until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll `condition` every 20 ms; False if it did not hold within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
