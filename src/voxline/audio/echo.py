"""The agent's own voice coming back from the caller (no echo cancellation there): removed.

Sans-I/O, no clock: the agent feeds what it sent (`sent`, each message it sends), the media
server's report of when its playout sent it (`played`), and each inbound chunk (`process`, with
the time its last sample was captured); times are seconds on the media server's `time.time()`.
What was sent is placed on a playout timeline as the media server played it
(`voxline.audio.echo_reference`).

For each 20 ms of input while the timeline holds audio within `max_lag_ms` before it:
1. the lag of the echo (network both ways, the caller's speaker, room or line) is found by
   normalised cross-correlation of the last `window_ms` of input with the reference (every
   200 ms; `voxline.audio.echo_lag`, which also says when a lag found is the echo's);
2. the echo path's power gain per frequency is learnt over the call (on 20 ms frames,
   G = <|X|^2 |Y|^2> / <|Y|^4>, forgetting over a second), so a filtered, attenuated echo is
   modelled. Powers, not phases: the echo's lag wobbles by a few milliseconds within a call
   (the caller's jitter buffer, a busy sender), which broke the earlier per-frequency complex
   fit; the reference's power is the most over +-20 ms around the lag for the same reason;
3. when the input's power under `ECHO_MARGIN` times that echo estimate is at least
   `suppress_r2` of the block's energy, the block is the agent's voice and is muted (the VAD
   and the STT hear silence). In double talk the caller's words put power where the reference
   has little, so the block passes as it came;
4. unless `caller_share` of the block's power lies in 200 Hz bands `caller_db` above the most
   echo expected there or in the bands either side: spectral shape, not level. The echo cannot
   put power there, so it is the caller's, and their first words pass even while most of the
   block is still the echo (level alone muted a caller's onset for 20-250 ms).

Measured against speexdsp's MDF canceller and against no processing in `voxline.bench.turns_echo`.
With no audio on the timeline near the input (the agent silent) a chunk costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxline.audio.echo_lag import LagTracker, search_lag
from voxline.audio.echo_reference import RATE, PlayoutTimeline, index
from voxline.bus.codec import AudioKind

__all__ = ["BLOCK", "RATE", "EchoCanceller", "EchoConfig", "EchoStats"]

BLOCK = 320  # 20 ms: one decision per block
FRAME, HOP = 320, 160  # the spectral fit's frames (20 ms, half overlapping)
_HANN = np.hanning(FRAME).astype(np.float32)
LOW_BIN = 2  # bins below 100 Hz (DC, hum, a microphone's offset) are left out of the fit
QUIET_FRAME_ENERGY = 0.5 * FRAME * float((_HANN ** 2).sum()) * 10.0 ** 2  # a frame at ~10 rms
PATH_MEMORY_S = 1.0  # the echo path's estimate forgets at this time constant
PATH_DECAY = float(np.exp(-HOP / RATE / PATH_MEMORY_S))
LEARNING_FRAMES = 20  # frames (200 ms of echo) before the learnt path alone decides
ONSET_NCC = 0.5  # until then, a search correlation this high at a confirmed lag is echo
SURE_NCC = 0.8  # ... and this high at a lag one search found
STAMP_SLACK = RATE // 50  # 20 ms
BINS = FRAME // 2 + 1 - LOW_BIN  # the echo path's gain is learnt per frequency (50 Hz apart)
WOBBLE = (-2 * HOP, -HOP, 0, HOP, 2 * HOP)  # the reference's power is the most over +-20 ms of lag
MAX_GAIN = 4.0  # the echo's power gain, bin by bin, is at most +6 dB (-6 to -20 dB measured)
ECHO_MARGIN = 2.0  # input power up to this times the estimated echo's (3 dB) is echo
LEARN_RESIDUAL = 0.7  # a frame the path leaves more of than this unexplained is double talk: not learnt
BAND = 4  # bins per band (200 Hz) of the caller test: a single bin's power is too noisy a ratio
SEARCH_EVERY = 3_200  # input samples between lag searches (200 ms: the echo path is steady)


@dataclass(frozen=True)
class EchoConfig:
    enabled: bool = True
    max_lag_ms: int = 1500  # echo delay searched: playout to the caller and back (its jitter buffer too), its room or line
    window_ms: int = 192  # input correlated per decision
    min_ncc: float = 0.35  # correlation below which the input is taken as not echo at all
    suppress_r2: float = 0.55  # share of a chunk's energy the fitted echo explains: mute it
    caller_db: float = 10.0  # a band this far above the echo expected there holds the caller's voice
    caller_share: float = 0.05  # share of a block's energy in such bands: the caller talks, it passes


@dataclass
class EchoStats:
    blocks: int = 0  # blocks analysed (reference present)
    muted: int = 0  # blocks muted as echo
    in_energy: float = 0.0  # input energy of analysed blocks
    out_energy: float = 0.0  # their output energy (ERLE = in / out on echo alone)
    lag_ms: float = 0.0  # the last lag found


class EchoCanceller:
    """One session's echo removal: reference in, caller audio with the echo muted out."""

    def __init__(self, config: EchoConfig | None = None) -> None:
        self.config = config or EchoConfig()
        cfg = self.config
        self.max_lag = cfg.max_lag_ms * RATE // 1000
        self.window = max(2 * FRAME, cfg.window_ms * RATE // 1000)  # input the lag search correlates
        self.stats = EchoStats()
        self.echo = False  # the last block processed was muted as echo
        self.explained = 0.0  # share of the last judged block's energy the echo explained
        self.reference = PlayoutTimeline(cfg.enabled, self.max_lag + self.window)
        self._in = np.zeros(self.window + self.max_lag // 2 + BLOCK, dtype=np.float32)  # recent input
        self._count = 0  # input samples seen
        self._offset: int | None = None  # absolute index of input sample 0 (earliest arrival seen)
        self._late_min: int | None = None  # the earliest offset stamped in this second of input
        self._late_since = 0  # input count when that second began
        self._next_frame = FRAME  # input count at which the next spectral frame ends
        # The echo path's power gain per band, G = <X2 Y2> / <Y2^2>, averaged with a forgetting
        # time of `PATH_MEMORY_S` over every frame since the lag was found (the path is steady).
        self._sxy = np.zeros(BINS, dtype=np.float64)
        self._syy = np.zeros(BINS, dtype=np.float64)
        self._residual = 0.0  # this block's frames: energy the path does not explain, and all of it
        self._total = 0.0
        self._foreign = 0.0  # ... and energy in bands far above the echo expected there (the caller's)
        self._caller_ratio = 10.0 ** (self.config.caller_db / 10)
        self._frames = 0
        self.lags = LagTracker()  # the echo's lag (`voxline.audio.echo_lag`)
        self._searched = -SEARCH_EVERY  # input count at the last lag search
        self._ncc = 0.0  # the last search's correlation at the lag it found
        self._learnt = 0  # frames the path was learnt from since the lag was found
        self._leaking = False  # the last block was loud and the learnt path did not explain it

    # -- reference ----------------------------------------------------------------------------
    def sent(self, kind: AudioKind, pcm: bytes, t: float, rate: int, turn: int = 0) -> None:
        """The agent sent a message of reply audio at `t` (see `PlayoutTimeline.sent`)."""
        self.reference.sent(kind, pcm, t, rate, turn)

    def played(self, turn: int, position_s: float, at: float, playing: bool) -> None:
        """The media server's playout report (`PlayoutTimeline.played`)."""
        self.reference.played(turn, position_s, at, playing)

    def feed_reference(self, pcm: bytes, t: float, rate: int = RATE) -> None:
        """`pcm` (mono s16) was sent at `t`: it plays after whatever is queued before it."""
        self.reference.feed(pcm, t, rate)

    # -- input ------------------------------------------------------------------------------
    def process(self, pcm: bytes, t: float) -> bytes:
        """Caller audio whose last sample was captured at `t`, with the agent's echo muted."""
        x = np.frombuffer(pcm, dtype=np.int16)
        if not self.config.enabled or x.size == 0:
            return pcm
        self._place(x.size, index(t))
        if not self.reference.near(self._abs(self._count) - self.window - self.max_lag,
                                    self._abs(self._count + x.size)):
            self._remember(x.astype(np.float32))
            self._next_frame = self._count + FRAME
            self.echo = False
            return pcm
        out = x.copy()
        for i in range(0, x.size, BLOCK):  # 20 ms blocks (the last may be shorter)
            if self._block(x[i:i + BLOCK].astype(np.float32)):
                out[i:i + BLOCK] = 0
        self._trim()
        return out.tobytes()

    def _block(self, x: np.ndarray) -> bool:
        """One block of input: True if it is the agent's echo (to be muted)."""
        self._remember(x)
        self.stats.blocks += 1
        energy = float(x @ x)
        self.stats.in_energy += energy
        if self._count - self._searched >= SEARCH_EVERY or not self.lags.confirmed or self._leaking:
            # Until a lag is confirmed, and while the learnt path fails to explain loud input
            # (`_leaking`: the caller talks, or their jitter buffer moved), every block searches,
            # so a moved echo leaks for a few blocks, not the 200-400 ms the VAD hears as speech.
            # An inconclusive search (a pause, double talk) keeps the last lag.
            self._searched = self._count
            lag = self._search()
            if lag is not None and self.lags.update(lag, self._count):
                self._learnt = 0
                self._sxy[:] = 0
                self._syy[:] = 0
        self._residual = self._total = self._foreign = 0.0
        self._frames = 0
        while self._next_frame <= self._count:
            self._add_frame(self._next_frame)
            self._next_frame += HOP
        if self._frames:  # else a short block inside the last frame: as the block before
            self.explained = 1.0 - self._residual / (self._total + 1e-3)
            # The path decides at a lag two searches in a row found: on a call with no echo at
            # all one search over the caller's first words finds a chance lag, and a path fitted
            # to a few of their frames "explained" the next ones (it muted 40-200 ms of them).
            self.echo = self.explained >= self.config.suppress_r2 and self.lags.confirmed
            if self._learnt < LEARNING_FRAMES:
                # The path is not learnt yet (the first words of the first reply): the search's
                # own correlation decides too. A caller talking over the echo keeps it low.
                self.echo = self.echo or self._onset()
            # Power the echo cannot have put there (bands 10 dB above what it explains) is the
            # caller's voice, however loud the echo around it: the block passes from its first
            # frame. Level alone muted a caller's onset under a loud echo for 100-300 ms.
            self.echo = self.echo and self._foreign < self.config.caller_share * (self._total + 1e-3)
            # Near silence in the voice band (below ~-70 dBFS: a pause, a DC offset) is
            # nobody's voice: passed as it is.
            loud = self._total >= self._frames * QUIET_FRAME_ENERGY
            self.echo = self.echo and loud
            self._leaking = loud and not self.echo and self._learnt >= LEARNING_FRAMES
        if self.echo:
            self.stats.muted += 1
        else:
            self.stats.out_energy += energy
        return self.echo

    def _add_frame(self, end: int) -> None:
        """Judge the input frame ending at input count `end` against the echo path known so far
        (before it is learnt from this frame: a loud word of the caller's would fit itself), then
        learn from it."""
        if self.lags.lag is None:
            return
        back = self._count - end
        x2 = _power(self._in[self._in.size - back - FRAME: self._in.size - back])
        start = self._abs(end) - self.lags.lag - FRAME
        y2 = np.max([_power(self.reference.slice(start + d, start + d + FRAME)) for d in WOBBLE], axis=0)
        learn = self._learnt < LEARNING_FRAMES or self._onset()
        if self._syy.any():
            expected = self._gain() * y2
            residual, total = float(np.maximum(0.0, x2 - ECHO_MARGIN * expected).sum()), float(x2.sum())
            foreign = self._unexplained(x2, expected)
            self._residual += residual
            self._total += total
            self._frames += 1
            # The caller's voice over the echo would pass for a louder echo path: the path
            # learns only from frames it mostly explains (or that follow the reference closely).
            learn = learn or residual <= LEARN_RESIDUAL * total
            if self._learnt >= LEARNING_FRAMES:  # (a younger path is too rough to tell the caller's bands)
                self._foreign += foreign
        if not learn:
            return
        self._sxy = PATH_DECAY * self._sxy + x2 * y2
        self._syy = PATH_DECAY * self._syy + y2 * y2
        self._learnt += 1

    def _gain(self) -> np.ndarray:
        """The echo path's power gain per bin, at most `MAX_GAIN`: a path of a few frames fitted
        to a caller's words at a chance lag (no echo on the call) has huge gains in bins where
        that reference was faint, and "explains" whole words of theirs with them."""
        gain: np.ndarray = np.minimum(MAX_GAIN, self._sxy / (self._syy + 1e-3))
        return gain

    def _unexplained(self, x2: np.ndarray, expected: np.ndarray) -> float:
        """A frame's power in 200 Hz bands `caller_db` above the most echo expected there or in
        the bands either side (the echo's spectrum smears by a band or so: its lag wobbles,
        Opus codes it). The agent's voice looped back put 5 % of a loud frame's power in such
        bands in no frame of 3,400 (offline and live); a caller's voice over it in 85 %."""
        n = x2.size // BAND * BAND
        xb, eb = x2[:n].reshape(-1, BAND).sum(axis=1), expected[:n].reshape(-1, BAND).sum(axis=1)
        near = np.pad(eb, 1, mode="edge")
        most = np.maximum(np.maximum(near[:-2], near[1:-1]), near[2:])
        return float(xb[xb > self._caller_ratio * most].sum())

    def _onset(self) -> bool:
        """The input follows the reference closely: at a lag two searches in a row found, or
        so closely that it is no chance (one search over a caller's words finds a chance lag
        at up to ~0.5)."""
        return self._ncc >= (ONSET_NCC if self.lags.confirmed else SURE_NCC)

    def _search(self) -> int | None:
        """The echo's lag in samples (0..max_lag), or None if the input does not follow the
        reference (`voxline.audio.echo_lag.search_lag`)."""
        end = self._abs(self._count)
        found = None
        if self._leaking and self.lags.confirmed:
            # The echo may have moved (a jitter buffer): the whole window, half before the move,
            # kept the old lag ~140 ms; half, since it, decides when sure (chance lags: <= ~0.5).
            found = search_lag(self.reference, self._in, end, self.window // 2, self.max_lag)
            found = found if found is not None and found[1] >= SURE_NCC else None
        found = found or search_lag(self.reference, self._in, end, self.window, self.max_lag)
        if found is None:
            return None
        lag, self._ncc = found
        if self._ncc < self.config.min_ncc:
            return None
        self.stats.lag_ms = lag * 1000 / RATE
        return lag

    # -- buffers ----------------------------------------------------------------------------
    def _place(self, n: int, end: int) -> None:
        """Map input counts to absolute time by each chunk's stamp (when its last sample
        arrived). A chunk arrives late (network jitter, a busy loop), never early, so the
        earliest arrival is the truth: the mapping follows an earlier stamp at once, and moves
        later only when every stamp for a second was later by more than `STAMP_SLACK` (audio
        was lost: the count received fell behind the clock). Following each late stamp made
        the lag wander by up to 100 ms with every burst, and the learnt echo path with it."""
        offset = end - (self._count + n)
        if self._offset is None or offset < self._offset:
            self._move(offset)
        self._late_min = offset if self._late_min is None else min(self._late_min, offset)
        if self._count + n - self._late_since >= RATE:
            if self._late_min - (self._offset or 0) > STAMP_SLACK:
                self._move(self._late_min)
            self._late_min, self._late_since = None, self._count + n

    def _move(self, offset: int) -> None:
        """A new input-to-clock mapping. The input already received has not moved against the
        reference, so the lag moves with the mapping: the learnt path (whose phase a shift of
        even a millisecond breaks) stays valid, and the next search refines it."""
        if self._offset is not None:
            self.lags.shift(offset - self._offset, self.max_lag)
        self._offset = offset

    def _abs(self, count: int) -> int:
        return count + (self._offset or 0)

    def _remember(self, x: np.ndarray) -> None:
        self._count += x.size
        if x.size >= self._in.size:
            self._in = x[-self._in.size:].copy()
        else:
            self._in = np.concatenate([self._in[x.size:], x])

    def _trim(self) -> None:
        """Forget reference that can no longer echo (older than the window and the lag)."""
        self.reference.forget_before(self._abs(self._count) - self.window - self.max_lag - 2 * BLOCK)


def _power(frame: np.ndarray) -> np.ndarray:
    """A frame's power spectrum from 100 Hz up (its mean removed first: DC leaks through the window)."""
    power: np.ndarray = np.abs(np.fft.rfft((frame - frame.mean()) * _HANN)[LOW_BIN:]) ** 2
    return power
