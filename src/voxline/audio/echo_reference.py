"""The echo canceller's reference: what the agent sent, placed on a timeline as it played.

Sans-I/O, no clock. Positions are absolute sample indexes at 16 kHz (`index(t)` of a
`time.time()`), so the canceller lines them up with the caller's audio by its capture times.

Placed by the media server's own report (`played`, the `playout` message): each run of a
turn's audio starts at the slot on the RTP clock where the playout sent it, and stops where it
stopped. Measured on a busy machine, the playout sent a reply's first frame 100-180 ms after
the agent had sent it, and its frames in bursts: the agent's send times are not when the
caller heard it. Until a media server reports (an older one), each piece of reply audio is
placed by the agent's send time instead: when it was sent or when the one before it ends, a
clear drops what had not played, a pause holds it until the resume.
"""

from __future__ import annotations

import numpy as np

from voxline.audio.resample import resample_s16
from voxline.bus.codec import AudioKind

RATE = 16_000
MAX_REFERENCE_S = 60.0  # reference queued ahead of playout, at most (a reply is far shorter)


class PlayoutTimeline:
    """The agent's voice as the caller hears it, before the way back: `samples` from `start`."""

    def __init__(self, enabled: bool = True, new_after: int = RATE) -> None:
        self.enabled = enabled
        self.new_after = new_after  # a piece this far (samples) after the last starts a new timeline
        self.samples = np.zeros(0, dtype=np.float32)
        self.start = 0  # absolute sample index of samples[0]
        self._cursor = 0  # absolute sample index where the next piece plays
        self._held: np.ndarray | None = None  # playout paused: the reference it holds
        self._held_turn = 0
        self.reported = False  # the media server reports its send timeline: placed by `played` alone
        self._streams: dict[int, np.ndarray] = {}  # each recent turn's audio as sent, for `played`
        self._run: tuple[int, int, int] | None = None  # playing: (turn, position in it, absolute index there)

    @property
    def end(self) -> int:
        return self.start + self.samples.size

    def sent(self, kind: AudioKind, pcm: bytes, t: float, rate: int, turn: int = 0) -> None:
        """The agent sent a message of reply audio at `t`: audio is queued, a clear drops the
        queue, a pause holds it until a resume (or until audio of a newer turn comes)."""
        if kind is AudioKind.AUDIO and self.enabled and pcm:
            self._remember(turn, _float16k(pcm, rate))
        if self.reported:
            return
        if kind is AudioKind.AUDIO:
            if self._held is not None and turn > self._held_turn:
                self.sent(AudioKind.RESUME, b"", t, rate, turn)
            if self._held is not None:  # queued behind a pause: it plays after the held audio
                more = _float16k(pcm, rate)[: max(0, int(MAX_REFERENCE_S * RATE) - self._held.size)]
                self._held = np.concatenate([self._held, more])
            else:
                self.feed(pcm, t, rate)
        elif kind is AudioKind.CLEAR:
            self.cut(t)
            self._held = None
        elif kind is AudioKind.PAUSE and self._held is None:
            self._held, self._held_turn = self._unplayed(t), turn
            self.cut(t)
        elif kind is AudioKind.RESUME and self._held is not None:
            held, self._held = self._held, None
            self.place(held, t)

    def played(self, turn: int, position_s: float, at: float, playing: bool) -> None:
        """The media server's playout: from `at`, turn `turn`'s audio from `position_s` on went
        out continuously (`playing`), or nothing more of it did. What was placed from `at` on
        (a guess) is replaced."""
        if not self.enabled:
            return
        if not self.reported:  # the first report: what the agent's send times placed is a guess
            self.samples, self._cursor = np.zeros(0, dtype=np.float32), index(at)
        self.reported = True
        self._held = None
        self.cut(at)
        self._run = None
        if playing:
            position, start = int(round(position_s * RATE)), index(at)
            self._run = (turn, position, start)
            stream = self._streams.get(turn)
            if stream is not None and position < stream.size:
                self.place(stream[position:], at)

    def _remember(self, turn: int, samples: np.ndarray) -> None:
        """Audio of `turn` was sent: kept for `played`; placed at once if that turn is playing."""
        before = self._streams.get(turn)
        size = 0 if before is None else before.size
        if size + samples.size > MAX_REFERENCE_S * RATE:
            return  # bounded (a reply is far shorter)
        self._streams[turn] = samples if before is None else np.concatenate([before, samples])
        for old in [t for t in self._streams if t < turn - 1]:
            del self._streams[old]
        if self.reported and self._run is not None and self._run[0] == turn:
            _, position, start = self._run
            at = start + max(0, size - position)
            self.place(samples[max(0, position - size):], at / RATE)

    def feed(self, pcm: bytes, t: float, rate: int = RATE) -> None:
        """`pcm` (mono s16) was sent at `t`: it plays after whatever is queued before it."""
        if self.enabled and pcm:
            self.place(_float16k(pcm, rate), t)

    def place(self, samples: np.ndarray, t: float) -> None:
        if not self.enabled or samples.size == 0:
            return
        start = max(index(t), self._cursor)
        if self.samples.size == 0 or start - self.end > self.new_after:
            self.samples, self.start = samples, start  # nothing recent: a new timeline
        else:
            gap = np.zeros(max(0, start - self.end), dtype=np.float32)
            self.samples = np.concatenate([self.samples[: max(0, start - self.start)], gap, samples])
        self._cursor = start + samples.size
        excess = self.samples.size - int(MAX_REFERENCE_S * RATE)
        if excess > 0:  # bounded: drop the far future, not what is about to echo
            self.samples = self.samples[:-excess]
            self._cursor -= excess

    def cut(self, t: float) -> None:
        """Playout was cleared at `t` (barge-in): what had not played yet never will."""
        now = index(t)
        keep = max(0, now - self.start)
        if keep < self.samples.size:
            self.samples = self.samples[:keep]
        self._cursor = min(self._cursor, now)

    def near(self, start: int, end: int) -> bool:
        """Whether any reference lies in [start, end)."""
        return self.samples.size > 0 and start < self.end and end > self.start

    def slice(self, start: int, end: int) -> np.ndarray:
        """The reference over [start, end), zeros where there is none."""
        out = np.zeros(end - start, dtype=np.float32)
        a, b = max(start, self.start), min(end, self.end)
        if b > a:
            out[a - start: b - start] = self.samples[a - self.start: b - self.start]
        return out

    def forget_before(self, at: int) -> None:
        """Reference before `at` can no longer echo."""
        drop = at - self.start
        if drop > 0:
            self.samples = self.samples[drop:]
            self.start += drop

    def _unplayed(self, t: float) -> np.ndarray:
        """The reference queued to play after `t` (what a pause holds)."""
        keep = max(0, index(t) - self.start)
        return self.samples[keep:].copy()


def _float16k(pcm: bytes, rate: int) -> np.ndarray:
    return np.frombuffer(resample_s16(pcm, rate, RATE), dtype=np.int16).astype(np.float32)


def index(t: float) -> int:
    """A time in seconds as an absolute sample index at 16 kHz."""
    return int(round(t * RATE))
