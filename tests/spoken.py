"""The spoken tests' audio: their sentences in the benchmarks' voices, over a noise floor.

Each test speaks in one voice of `voxline.bench.voices.VOICES` (five espeak-ng voices and
rates, Piper at three speeds), picked from the test's node ID, so a failure comes back with
the same voice on every run; `@pytest.mark.voice(label)` picks one by hand (say why). Every
utterance lies over seeded pink noise at NOISE_FLOOR_DBFS: a microphone is never digitally
silent, and the speech's own pauses are not either. What is made is kept for the test session
and on disk under pytest's cache (`.pytest_cache/d/voxline-speech`).
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from sentences import bench_sentence_in
from voxline.bench.voices import VOICES, Speaker, Voice, noise_floor, over_floor, voice_named

NOISE_FLOOR_DBFS = -55.0
# For tests about something other than hearing (take-over, faults), which must not fail on a
# mishearing: espeak en-gb-x-rp 190 was heard over the call as "the capital I'm saying" (Spain),
# "the name on our plan" (planet) and "which even comes after winter" (season).
HEARD_WELL = "piper joe 1.0"
# Part of the disk cache's key: change it when what a voice makes changes.
MADE_BY = "voices-1"


def voice_for(node_id: str) -> Voice:
    """The voice a test speaks in, fixed by its node ID (crc32: the same on every run)."""
    return VOICES[zlib.crc32(node_id.encode()) % len(VOICES)]


def seed_of(*parts: str) -> int:
    return zlib.crc32("|".join(parts).encode())


def floor16k(seconds: float, seed: int = 0) -> bytes:
    """`seconds` of the noise floor as 16 kHz s16 (where a test had digital silence)."""
    return noise_floor(int(seconds * 16_000), NOISE_FLOOR_DBFS, seed).tobytes()


class Corpus:
    """Makes and keeps the session's utterances: (voice label, text) -> 16 kHz s16."""

    def __init__(self, disk: Path | None) -> None:
        self.disk = disk
        self.made: dict[tuple[str, str], bytes] = {}
        self.speaker = Speaker(fixed=True)  # Piper without its random noise: the same audio each run

    def use_tts(self, tts: Any) -> None:
        """Speak Piper's voices with the session's loaded PiperTTS."""
        if self.speaker._tts is None:
            self.speaker = Speaker(fixed=True, tts=tts)

    def __call__(self, text: str, voice: Voice) -> bytes:
        bench = bench_sentence_in(text)
        if bench is not None:
            raise ValueError(f"{text!r} says a benchmark's sentence ({bench!r}): tests speak tests/sentences.py's")
        key = (voice[0], text)
        if key not in self.made:
            self.made[key] = self._load(voice, text)
        return self.made[key]

    def _load(self, voice: Voice, text: str) -> bytes:
        name = hashlib.sha256(f"{MADE_BY}|{NOISE_FLOOR_DBFS}|{voice}|{text}".encode()).hexdigest()[:24]
        path = self.disk / f"{name}.pcm" if self.disk is not None else None
        if path is not None and path.exists():
            return path.read_bytes()
        pcm = over_floor(self.speaker(text, voice), NOISE_FLOOR_DBFS, seed_of(voice[0], text))
        if path is not None:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pcm)
            tmp.replace(path)
        return pcm


class Speech:
    """`speech(text)`: 16 kHz mono s16 of `text` in this test's voice, over the noise floor.

    `speech(text, voice=label)` says it in another voice (a second caller); `speech.voice` is
    the test's voice, `speech.other` another one (the next in VOICES).
    """

    def __init__(self, corpus: Corpus, voice: Voice) -> None:
        self.corpus = corpus
        self.voice = voice[0]
        self.other = VOICES[(VOICES.index(voice) + 1) % len(VOICES)][0]

    def __call__(self, text: str, voice: str | None = None) -> bytes:
        return self.corpus(text, voice_named(voice or self.voice))

    def needs_piper(self) -> bool:
        return any(voice_named(label)[1] == "piper" for label in (self.voice, self.other))


def level_dbfs(pcm: np.ndarray) -> float:
    """RMS level of s16 samples, in dB below full scale."""
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    return 20 * float(np.log10(max(rms, 1e-9) / 32768.0))
