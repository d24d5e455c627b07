"""Helpers the media and spoken tests share: the caller's microphone samples, the words heard, a poll."""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from collections.abc import Callable

import numpy as np

from spoken import NOISE_FLOOR_DBFS
from voxline.audio.resample import resample_s16
from voxline.bench.voices import noise_floor
from voxline.client.audio import RATE

# Words that carry no meaning of their own: a check that two texts say the same thing must
# not pass because both contain "the" or "you".
STOP_WORDS = frozenset("""
    the and for you your yours are was were what that this these those with have has had not
    but can all any its it's our ours out from they them there their theirs which who whom how
    why when where will would could should about into onto than then some also just like very
    here been being does did doing don't i'm i'll i've you're you'll we're we'll let's sure
    well yes okay she her him his hers more most much many such only own same too now
""".split())  # noqa: SIM905 - a word list reads better as text


def words(text: str) -> set[str]:
    """The content words of `text`: lower case, longer than two letters, no stop words."""
    return {w.strip("'") for w in re.findall(r"[a-z']+", text.lower())
            if len(w.strip("'")) > 2 and w.strip("'") not in STOP_WORDS}


def says_the_same(heard: str, said: str, share: float = 0.5) -> bool:
    """`heard` carries at least `share` of `said`'s content words (and at least one).

    A reply's audio transcribed back must say most of what its text said: one shared word is
    chance, not proof that the audio is the reply.
    """
    expected = words(said)
    if not expected:
        return False
    return len(words(heard) & expected) >= max(1, round(share * len(expected)))


def floor48k(seconds: float, seed: int = 0) -> np.ndarray:
    """`seconds` of the spoken tests' noise floor as 48 kHz samples (a microphone's hiss)."""
    return noise_floor(int(seconds * RATE), NOISE_FLOOR_DBFS, seed)


def at48k(pcm16k: bytes, pad_s: float = 0.3, tail_s: float = 2.0) -> np.ndarray:
    """16 kHz speech as the caller's 48 kHz microphone samples: `pad_s` of the noise floor
    before it and `tail_s` after it (what the end of the turn is heard over; the caller's
    `say` still returns the end of the speech)."""
    speech = np.frombuffer(resample_s16(pcm16k, 16_000, RATE), dtype=np.int16)
    seed = zlib.crc32(pcm16k[:4000])
    return np.concatenate([floor48k(pad_s, seed), speech, floor48k(tail_s, seed + 1)])


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

