"""A caller without echo cancellation: what it hears of the agent goes back into its microphone.

Like a speakerphone or a phone line: the agent's voice as received is played out (contiguous,
like a jitter buffer), delayed, attenuated and band-limited, mixed into what the caller says,
and Opus-encoded live (a plain `WavSource` sends pre-encoded packets).
"""

from __future__ import annotations

import numpy as np

from voxline.audio.opus import OpusEncoder
from voxline.client.audio import FRAME, RATE, Recorder, WavSource
from voxline.client.caller import Caller

_TAPS = 129  # the line's band-pass, 300-3,400 Hz (windowed sinc)
_N = np.arange(_TAPS) - _TAPS // 2
LINE = ((2 * 3_400 / RATE * np.sinc(2 * 3_400 / RATE * _N) - 2 * 300 / RATE * np.sinc(2 * 300 / RATE * _N))
        * np.hamming(_TAPS)).astype(np.float32)
KEEP_S = 2.0  # heard audio kept for the delay line
MOVE_STEPS = 3  # a moving delay moves in this many steps ...
MOVE_EVERY_S = 1.0  # ... one each this long into the agent's voice (as a jitter buffer adapts)


class EchoSource(WavSource):
    """A microphone that also picks up the caller's speaker: `hear()` feeds it what arrived."""

    def __init__(self, delay_ms: float, gain_db: float, move_ms: float = 0.0) -> None:
        super().__init__()
        self.delay = int(delay_ms * RATE / 1000)
        self.move = int(move_ms * RATE / 1000)
        self._first_heard: int | None = None  # when the agent's voice was first heard (48 kHz samples)
        self.gain = float(10 ** (gain_db / 20))
        self._encoder = OpusEncoder()
        self._heard = np.zeros(0, dtype=np.float32)
        self._heard_start = 0  # absolute 48 kHz sample index of _heard[0]
        self._cursor = 0  # where the next heard frame plays
        self._tail = np.zeros(_TAPS - 1, dtype=np.float32)

    def hear(self, mono: np.ndarray, arrived: float) -> None:
        """A frame of the agent's voice arrived at `arrived`: the speaker plays it from then."""
        at = int(arrived * RATE)
        if self._first_heard is None:
            self._first_heard = at
        if self._heard.size == 0 or at - self._cursor > RATE // 10 or self._cursor - at > RATE // 5:
            self._heard, self._heard_start, self._cursor = np.zeros(0, dtype=np.float32), at, at
        x = np.concatenate([self._tail, mono.astype(np.float32)])
        self._tail = x[-(_TAPS - 1):]
        played = np.convolve(x, LINE, mode="valid") * self.gain
        self._heard = np.concatenate([self._heard, played])
        self._cursor += played.size
        drop = self._heard.size - int(KEEP_S * RATE)
        if drop > 0:
            self._heard, self._heard_start = self._heard[drop:], self._heard_start + drop

    def delay_at(self, sample: int) -> int:
        """The echo's delay at `sample`: `delay`, then moved by `move` in MOVE_STEPS steps."""
        if not self.move or self._first_heard is None:
            return self.delay
        steps = min(MOVE_STEPS, max(0, int((sample - self._first_heard) / (MOVE_EVERY_S * RATE))))
        return max(0, self.delay + self.move * steps // MOVE_STEPS)

    def next_payload(self, now: float) -> tuple[bytes, int]:
        position = self._step(now)
        own = np.zeros(FRAME, dtype=np.float32)
        if 0 <= position < self.samples.size:
            part = self.samples[position:position + FRAME].astype(np.float32)
            own[: part.size] = part
        start = int(now * RATE) - self.delay_at(int(now * RATE)) - self._heard_start
        lo, hi = max(0, start), min(self._heard.size, start + FRAME)
        if hi > lo:
            own[lo - start: hi - start] += self._heard[lo:hi]
        pcm = np.clip(np.rint(own), -32768, 32767).astype(np.int16).tobytes()
        packet = self._encoder.encode(pcm, self._pts)
        return (bytes(packet) if packet is not None else b""), self._pts


class EchoRecorder(Recorder):
    """Records the agent as usual and hands each frame to the speaker-to-microphone path."""

    def __init__(self, source: EchoSource) -> None:
        super().__init__()
        self.source = source

    def frame(self, mono: np.ndarray, media_s: float | None, arrived: float) -> bool:
        self.source.hear(mono, arrived)
        return super().frame(mono, media_s, arrived)


class EchoCaller(Caller):
    """A `Caller` whose microphone hears its speaker: `delay_ms` later (moving by `move_ms`
    during the call), `gain_db` quieter."""

    def __init__(self, server: str, delay_ms: float, gain_db: float, token: str | None = None,
                 move_ms: float = 0.0) -> None:
        super().__init__(server, token)
        source = EchoSource(delay_ms, gain_db, move_ms)
        self.source = source
        self.recorder = EchoRecorder(source)
