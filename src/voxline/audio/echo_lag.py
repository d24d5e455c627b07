"""Where the agent's echo lies in the caller's input: the lag search and the lag it settles on.

Split from `voxline.audio.echo` (the power path): `search_lag` correlates recent input with the
playout reference, `LagTracker` decides when a lag found is the echo's. Sans-I/O, no clock:
counts are input samples at 16 kHz.
"""

from __future__ import annotations

import numpy as np

from voxline.audio.echo_reference import PlayoutTimeline

LAG_SLACK = 40  # samples (2.5 ms) of lag error a search may find without moving the lag
FIRST_CONFIRM = 960  # input samples (60 ms) from the search that found an unconfirmed lag to one that confirms it


def _next_pow2(n: int) -> int:
    return 1 << (max(1, n) - 1).bit_length()


def search_lag(reference: PlayoutTimeline, recent: np.ndarray, end: int, window: int,
               max_lag: int) -> tuple[int, float] | None:
    """The lag in samples (0..max_lag) at which the last `window` samples of `recent` (input
    ending at absolute index `end`) best follow the reference, and its normalised correlation;
    None when the reference there is silent. Cross-correlation at 8 kHz (every second sample
    is enough for a lag the spectral fit refines), first differences (they whiten speech a little)."""
    w, lmax = window // 2, max_lag // 2
    seg = reference.slice(end - 2 * (w + lmax) - 2, end)
    seg = np.diff(seg[0::2] + seg[1::2])
    if not seg.any():
        return None
    inp = recent[-2 * w - 2:]
    xw = np.diff(inp[0::2] + inp[1::2])
    w = xw.size
    lmax = seg.size - w
    nfft = _next_pow2(seg.size + w)
    r = np.fft.irfft(np.fft.rfft(seg, nfft) * np.conj(np.fft.rfft(xw, nfft)), nfft)[: lmax + 1]
    c = r[::-1]  # c[l]: the input against the reference l (8 kHz) samples earlier
    energy = np.concatenate([[0.0], np.cumsum(seg.astype(np.float64) ** 2)])
    k = lmax - np.arange(lmax + 1)
    ey = energy[k + w] - energy[k]
    # A lag that lines the input up with the reference's near-silence (before the reply
    # began, a pause) would score on noise: its energy is floored at a tenth of the most.
    ey = np.maximum(ey, 0.1 * float(ey.max()))
    ncc = c / np.sqrt((float(xw @ xw) + 1e-3) * ey + 1e-3)
    lag = int(np.argmax(ncc))
    return 2 * lag, float(ncc[lag])


class LagTracker:
    """The echo's lag from successive searches. A confident search near the lag keeps it (and
    confirms a first lag once it comes from other input, `FIRST_CONFIRM` later: the next block's
    search, over nearly the same input, finds a chance lag over a caller's words again); a
    different lag moves it only if the next search agrees."""

    def __init__(self) -> None:
        self.lag: int | None = None  # the echo's lag in samples, from the last confident search
        self.confirmed = False  # two searches over different input found this lag
        self.found = 0  # input count when the lag was found while none was confirmed
        self.moving: int | None = None  # a different lag, found once: the next search decides

    def update(self, lag: int, count: int) -> bool:
        """A confident search at input count `count` found `lag`: True if the lag moved (the
        echo path learnt at the old one no longer holds)."""
        if self.lag is not None and abs(lag - self.lag) <= LAG_SLACK:
            self.confirmed = self.confirmed or count - self.found >= FIRST_CONFIRM
            self.moving = None  # the learnt path absorbs a small error
            return False
        if self.lag is None or (self.moving is not None and abs(lag - self.moving) <= LAG_SLACK):
            if not self.confirmed:
                self.found = count
            self.lag, self.moving = lag, None
            return True
        self.moving = lag
        return False

    def shift(self, shift: int, max_lag: int) -> None:
        """The input's mapping to the clock moved by `shift` samples: so does every lag."""
        if self.lag is not None:
            self.lag = min(max_lag, max(0, self.lag + shift))
        if self.moving is not None:
            self.moving += shift
