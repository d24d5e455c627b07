"""The turn-taking benchmark's corpus, made on the spot: espeak-ng voices and rates, Piper, noise.

Five kinds of case, each a caller's script:
  question      a complete question (voice-to-voice, end-of-turn wait);
  paused        one utterance with 0.6-1.5 s pauses at incomplete points ("I want to ... book");
  backchannel   a question with a long answer, then "mm-hmm", "yeah", ... or a cough over it;
  interruption  the same, then a real interruption ("Stop. What is two plus two?");
  echo          a question with a long answer, from a caller that sends what it hears back
                (delayed 20-300 ms, -6 to -20 dB, a phone line's band).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voxline.bench import voices
from voxline.client.audio import RATE

KINDS = ("question", "paused", "backchannel", "interruption", "echo")
VOICES = (("en-us", 150), ("en", 170), ("en-us+f3", 140), ("en+m3", 180), ("en-us+m7", 160))
QUESTIONS = ("What is the capital of France?", "How many days are in a week?", "What color is the sky?",
             "Can you recommend a good breakfast?", "How do I boil an egg?", "Where do penguins live?")
PAUSED = (("I want to", "book a table for two tonight."),
          ("The code is four two", "seven nine."),
          ("Can you tell me about", "the weather in Paris?"),
          ("I was thinking that maybe we could", "go to the beach tomorrow."),
          ("My favourite colour is blue and", "my favourite animal is the cat."))
PAUSES_S = (0.6, 0.9, 1.2, 1.5)
LONG = ("Tell me a long story about a brave knight and a dragon.",
        "Can you explain how a car engine works?",
        "Tell me everything you know about the ocean.")
BACKCHANNELS = ("mm-hmm", "yeah", "okay", "right", "uh-huh", "cough")
INTERRUPTIONS = ("Stop. What is two plus two?", "Wait, what time is it in London?",
                 "No, I meant the weather in Rome.")
ECHOES = ((120, -10), (20, -6), (300, -20), (200, -6), (60, -14))  # (delay ms, gain dB)

Speak = Callable[[str, int], np.ndarray]  # (text, variant) -> mono s16 at 48 kHz


@dataclass(frozen=True)
class Case:
    kind: str
    name: str
    said: np.ndarray  # what the caller says first (48 kHz mono s16)
    during: np.ndarray | None = None  # said while the agent is speaking
    echo_delay_ms: float = 0.0
    echo_gain_db: float = 0.0


def espeak(text: str, variant: int = 0) -> np.ndarray:
    """`text` spoken by espeak-ng in one of VOICES, as 48 kHz mono s16."""
    voice, rate = VOICES[variant % len(VOICES)]
    return np.frombuffer(voices.espeak(text, voice, rate, RATE), dtype=np.int16)


def cough(variant: int = 0, seconds: float = 0.25) -> np.ndarray:
    """A cough: a burst of low-passed noise, sharp onset, quick decay (no words)."""
    rng = np.random.default_rng(variant)
    n = int(seconds * RATE)
    noise = np.convolve(rng.standard_normal(n), np.hanning(9), mode="same")
    t = np.arange(n) / RATE
    envelope = (1 - np.exp(-t / 0.01)) * np.exp(-t / 0.08)
    burst: np.ndarray = (noise / np.abs(noise).max() * envelope * 14_000).astype(np.int16)
    return burst


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def build(per_kind: int = 3, speak: Speak = espeak, piper: Speak | None = None) -> list[Case]:
    """`per_kind` cases of each kind; every other question spoken by `piper` when given."""
    cases: list[Case] = []
    for i in range(per_kind):
        q = QUESTIONS[i % len(QUESTIONS)]
        voice = piper if piper is not None and i % 2 else speak
        cases.append(Case("question", q, voice(q, i)))
        first, rest = PAUSED[i % len(PAUSED)]
        pause = PAUSES_S[i % len(PAUSES_S)]
        cases.append(Case("paused", f"{first} [{pause:.1f} s] {rest}",
                          np.concatenate([speak(first, i), silence(pause), speak(rest, i)])))
        long_q = speak(LONG[i % len(LONG)], i)
        bc = BACKCHANNELS[i % len(BACKCHANNELS)]
        cases.append(Case("backchannel", bc, long_q, cough(i) if bc == "cough" else speak(bc, i + 1)))
        stop = INTERRUPTIONS[i % len(INTERRUPTIONS)]
        cases.append(Case("interruption", stop, long_q, speak(stop, i + 1)))
        delay, gain = ECHOES[i % len(ECHOES)]
        cases.append(Case("echo", f"{delay} ms, {gain} dB", long_q, echo_delay_ms=delay, echo_gain_db=gain))
    return cases
