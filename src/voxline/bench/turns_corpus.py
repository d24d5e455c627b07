"""The turn-taking benchmark's corpus, made on the spot: espeak-ng voices and rates, Piper, noise.

Five kinds of case, each a caller's script:
  question      a complete question (voice-to-voice, end-of-turn wait);
  paused        one utterance with a 0.6-1.5 s pause at an incomplete point (after "and",
                "because", "I want to", a preposition, half a number);
  backchannel   a question with a long answer, then "mm-hmm", "yeah", ..., a cough, a knock or
                a breath over it;
  interruption  the same, then a real interruption ("Stop. What is two plus two?");
  echo          a question with a long answer, from a caller that sends what it hears back
                (delayed 20-300 ms, -6 to -20 dB, a phone line's band; in some cases the delay
                moves during the call, as a jitter buffer's does).
Case i of a kind takes the i-th text, pause, sound and echo of its lists and a voice from the
i-th place of another cycle, so N cases a kind cover min(N, len) of each list in varied voices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voxline.bench import voices
from voxline.client.audio import RATE

KINDS = ("question", "paused", "backchannel", "interruption", "echo")
VOICES = (("en-us", 150), ("en", 170), ("en-us+f3", 140), ("en+m3", 180), ("en-us+m7", 160),
          ("en-gb-x-rp", 190), ("en-us+f4", 130))
QUESTIONS = ("What is the capital of France?", "How many days are in a week?", "What color is the sky?",
             "Can you recommend a good breakfast?", "How do I boil an egg?", "Where do penguins live?",
             "Who painted the Mona Lisa?", "How far away is the moon?", "What is the tallest mountain?",
             "Why do cats purr?", "When does the sun set in winter?", "Which fruit has the most vitamin C?")
PAUSED = (("I want to", "book a table for two tonight."),
          ("The code is four two", "seven nine."),
          ("Can you tell me about", "the weather in Paris?"),
          ("I was thinking that maybe we could", "go to the beach tomorrow."),
          ("My favourite colour is blue and", "my favourite animal is the cat."),
          ("I missed the bus because", "it left early this morning."),
          ("Please send the parcel to", "my office in Leeds."),
          ("My phone number is five five", "one two three four."),
          ("I need a taxi for", "three people at noon."),
          ("We should leave now or", "we will be late."),
          ("What is the best way to", "learn to play the piano?"),
          ("I would like a pizza with", "mushrooms and olives."),
          ("The meeting starts at half past", "nine on Monday."),
          ("I think the answer is", "forty seven."),
          ("Remind me to call my sister when", "I get home."),
          ("It was raining so", "we stayed inside all day."))
PAUSES_S = (0.6, 0.9, 1.2, 1.5, 0.8, 1.0)
LONG = ("Tell me a long story about a brave knight and a dragon.",
        "Can you explain how a car engine works?",
        "Tell me everything you know about the ocean.",
        "Describe a day in the life of a farmer.",
        "Explain how airplanes stay in the air.")
SOUNDS = ("cough", "knock", "breath")  # said-over sounds without words, made here
BACKCHANNELS = ("mm-hmm", "yeah", "okay", "right", "uh-huh", "cough", "knock", "breath")
INTERRUPTIONS = ("Stop. What is two plus two?", "Wait, what time is it in London?",
                 "No, I meant the weather in Rome.", "Hold on, can you say that again?",
                 "Sorry, I have another question.", "Actually, tell me a joke instead.",
                 "Excuse me, how old are you?", "Never mind that, what is your name?")
# (delay ms, gain dB, the delay's move during the call ms): -6 to -20 dB, 20-300 ms.
ECHOES = ((120, -10, 0), (20, -6, 0), (300, -20, 0), (200, -6, 0), (60, -14, 0),
          (40, -10, 120), (250, -10, 0), (100, -8, 160), (150, -18, 0), (280, -12, -200),
          (80, -10, 0), (180, -6, 100))

Speak = Callable[[str, int], np.ndarray]  # (text, variant) -> mono s16 at 48 kHz


@dataclass(frozen=True)
class Case:
    kind: str
    name: str
    said: np.ndarray  # what the caller says first (48 kHz mono s16)
    during: np.ndarray | None = None  # said while the agent is speaking
    echo_delay_ms: float = 0.0
    echo_gain_db: float = 0.0
    echo_move_ms: float = 0.0  # the echo's delay moves by this much during the reply (in steps)


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


def knock(variant: int = 0) -> np.ndarray:
    """Two or three knocks on a table: short resonant thuds 150-250 ms apart (no words)."""
    rng = np.random.default_rng(100 + variant)
    count, gap = 2 + variant % 2, 0.15 + 0.1 * rng.random()
    out = np.zeros(int((count * gap + 0.2) * RATE), dtype=np.float64)
    t = np.arange(int(0.12 * RATE)) / RATE
    for k in range(count):
        pitch = 180 + 80 * rng.random()
        thud = np.sin(2 * np.pi * pitch * t) * np.exp(-t / 0.02) + 0.3 * rng.standard_normal(t.size) * np.exp(-t / 0.004)
        start = int(k * gap * RATE)
        out[start:start + t.size] += thud
    knocks: np.ndarray = (out / np.abs(out).max() * 16_000).astype(np.int16)
    return knocks


def breath(variant: int = 0, seconds: float = 0.6) -> np.ndarray:
    """A breath into the microphone: band-limited noise that swells and fades (no words)."""
    rng = np.random.default_rng(200 + variant)
    n = int(seconds * RATE)
    noise = np.convolve(rng.standard_normal(n), np.hanning(5), mode="same")
    envelope = np.sin(np.pi * np.arange(n) / n) ** 2
    air: np.ndarray = (noise / np.abs(noise).max() * envelope * 6_000).astype(np.int16)
    return air


def sound(name: str, variant: int = 0) -> np.ndarray:
    return {"cough": cough, "knock": knock, "breath": breath}[name](variant)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def build(per_kind: int = 3, speak: Speak = espeak, piper: Speak | None = None,
          kinds: tuple[str, ...] = KINDS) -> list[Case]:
    """`per_kind` cases of each of `kinds`; every other question and every third paused
    utterance spoken by `piper` when given."""
    cases: list[Case] = []
    for i in range(per_kind):
        q = QUESTIONS[i % len(QUESTIONS)]
        voice = piper if piper is not None and i % 2 else speak
        cases.append(Case("question", q, voice(q, i)))
        first, rest = PAUSED[i % len(PAUSED)]
        pause = PAUSES_S[i % len(PAUSES_S)]
        voice = piper if piper is not None and i % 3 == 2 else speak
        cases.append(Case("paused", f"{first} [{pause:.1f} s] {rest}",
                          np.concatenate([voice(first, i), silence(pause), voice(rest, i)])))
        long_q = speak(LONG[i % len(LONG)], i)
        bc = BACKCHANNELS[i % len(BACKCHANNELS)]
        cases.append(Case("backchannel", bc, long_q, sound(bc, i) if bc in SOUNDS else speak(bc, i + 1)))
        stop = INTERRUPTIONS[i % len(INTERRUPTIONS)]
        cases.append(Case("interruption", stop, long_q, speak(stop, i + 1)))
        delay, gain, move = ECHOES[i % len(ECHOES)]
        name = f"{delay} ms, {gain} dB" + (f", moving {move:+d} ms" if move else "")
        cases.append(Case("echo", name, long_q, echo_delay_ms=delay, echo_gain_db=gain, echo_move_ms=move))
    return [c for c in cases if c.kind in kinds]
