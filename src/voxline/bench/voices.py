"""The voices the benchmarks and the spoken tests speak in, and the noise floor under them.

One place for both: espeak-ng in several voices and rates, and Piper (the project's own TTS
voice) at three speeds. `--wer` (with MORE_VOICES) and `--answers` rotate through VOICES; the tests' `speech`
fixture gives each test one of them, fixed by the test's name. A real microphone is never
digitally silent: `noise_floor` is seeded pink noise to put under and around the speech.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from typing import Any

import numpy as np

from voxline.audio.resample import resample_s16

# (label, engine, voice or length scale, words per minute)
Voice = tuple[str, str, str, int]
VOICES: tuple[Voice, ...] = (
    ("espeak en-us 150", "espeak", "en-us", 150), ("espeak en-gb 175", "espeak", "en-gb", 175),
    ("espeak en-us+f3 130", "espeak", "en-us+f3", 130), ("espeak en-gb-x-rp 190", "espeak", "en-gb-x-rp", 190),
    ("espeak en-us+m3 165", "espeak", "en-us+m3", 165), ("piper joe 1.0", "piper", "1.0", 0),
    ("piper joe 0.8 (fast)", "piper", "0.8", 0), ("piper joe 1.25 (slow)", "piper", "1.25", 0),
)


# More accents and rates, for `--wer` only: the tests' voices are drawn from VOICES by each
# test's name, and a longer tuple would give every test another voice.
MORE_VOICES: tuple[Voice, ...] = (
    ("espeak en-gb-scotland 160", "espeak", "en-gb-scotland", 160),
    ("espeak en-gb-x-gbclan 180", "espeak", "en-gb-x-gbclan", 180),
    ("espeak en-us+m7 140", "espeak", "en-us+m7", 140),
)


def voice_named(label: str) -> Voice:
    """The entry of VOICES with this label (a KeyError names the labels there are)."""
    for voice in VOICES:
        if voice[0] == label:
            return voice
    raise KeyError(f"no voice {label!r}; there are {[v[0] for v in VOICES]}")


def espeak_wav(text: str, voice: str = "en-us", wpm: int = 150) -> bytes:
    """`text` spoken by espeak-ng, as the WAV file it writes (22.05 kHz mono s16)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    return subprocess.run([exe, "-v", voice, "-s", str(wpm), "--stdout", text], check=True,
                          capture_output=True, timeout=30).stdout


def espeak(text: str, voice: str = "en-us", wpm: int = 150, rate: int = 16_000) -> bytes:
    """`text` spoken by espeak-ng, as mono s16 at `rate`."""
    with wave.open(io.BytesIO(espeak_wav(text, voice, wpm))) as w:
        return resample_s16(w.readframes(w.getnframes()), w.getframerate(), rate)


class Speaker:
    """Says a text in one of VOICES at 16 kHz (espeak-ng, or Piper loaded on first use).

    Piper draws random noise inside its model on every call, so the same text never comes out
    twice the same. `fixed=True` turns that noise off (a flatter voice, the same samples every
    time): what the tests need for a failure to be reproducible. `tts` reuses a loaded
    PiperTTS instead of loading another.
    """

    def __init__(self, fixed: bool = False, tts: Any = None) -> None:
        self.fixed = fixed
        self._tts = tts

    def __call__(self, text: str, voice: Voice) -> bytes:
        _, engine, name, wpm = voice
        if engine == "espeak":
            return espeak(text, name, wpm)
        return self.piper(text, float(name))

    def piper(self, text: str, length_scale: float) -> bytes:
        from piper import SynthesisConfig

        if self._tts is None:
            from voxline.services.tts.piper import PiperTTS

            self._tts = PiperTTS()
        noise = 0.0 if self.fixed else None  # None: the voice's own noise settings
        config = SynthesisConfig(volume=0.8, length_scale=length_scale, noise_scale=noise, noise_w_scale=noise)
        pcm = b"".join(chunk.audio_int16_bytes for chunk in self._tts.voice.synthesize(text, config))
        return resample_s16(pcm, self._tts.sample_rate, 16_000)


def noise_floor(samples: int, dbfs: float = -55.0, seed: int = 0) -> np.ndarray:
    """Pink noise (power falling 3 dB an octave, like a room and a microphone's hiss) at an RMS
    of `dbfs` below full scale, as s16; the same `seed` gives the same noise."""
    if samples <= 0:
        return np.zeros(0, dtype=np.int16)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    bins = np.arange(spectrum.size, dtype=np.float64)
    bins[0] = 1.0
    pink = np.fft.irfft(spectrum / np.sqrt(bins), n=samples)
    pink -= pink.mean()
    rms = float(np.sqrt(np.mean(pink ** 2))) or 1.0
    scaled = pink / rms * 32768.0 * 10 ** (dbfs / 20)
    return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)


def over_floor(pcm: bytes, dbfs: float = -55.0, seed: int = 0) -> bytes:
    """s16 `pcm` with a seeded noise floor added under it (the speech's own silences included)."""
    speech = np.frombuffer(pcm, dtype=np.int16).astype(np.int32)
    mixed = speech + noise_floor(speech.size, dbfs, seed)
    return bytes(np.clip(mixed, -32768, 32767).astype(np.int16).tobytes())
