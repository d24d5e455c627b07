"""PCM helpers: resampling (soxr) and channel mixing for s16le audio."""

from __future__ import annotations

import numpy as np
import soxr


def resample_s16(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample mono s16le in one shot (whole utterances; streams use `StreamResampler`)."""
    if from_rate == to_rate or not pcm:
        return pcm
    x = np.frombuffer(pcm, dtype=np.int16)
    out: np.ndarray = soxr.resample(x, from_rate, to_rate)
    return out.astype(np.int16).tobytes()


class StreamResampler:
    """Resample a mono s16 stream chunk by chunk without clicks at the chunk edges."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.passthrough = from_rate == to_rate
        self._rs = None if self.passthrough else soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16", quality="HQ")

    def push(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._rs is None:
            return samples
        out: np.ndarray = self._rs.resample_chunk(samples, last=last)
        return out


class Decimator3:
    """48 kHz -> 16 kHz for a live stream: exactly a third as many samples out as in, at once.

    soxr's streaming resampler answers in bursts (0 or ~490 samples per 20 ms frame at HQ),
    which holds caller audio back by up to a frame before VAD sees it. This is a 127-tap
    Kaiser-windowed low-pass (cutoff 7.5 kHz: -0.6 dB at 7 kHz, below -80 dB from 8.5 kHz)
    evaluated at every third sample, with the last 126 input samples kept between calls:
    ~40 us a frame, 1.3 ms delay. Whisper's mel bands reach 8 kHz: the earlier 63 taps cut at
    7 kHz lost 6 dB there and moved its features 8x further from soxr's (tests/unit/audio/
    test_call_path.py).
    """

    TAPS = 127

    def __init__(self) -> None:
        n = np.arange(self.TAPS) - (self.TAPS - 1) / 2
        cutoff = 7_500 / 48_000
        taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(self.TAPS, 8.0)
        self._taps = (taps / taps.sum()).astype(np.float32)  # symmetric: correlation = convolution
        self._tail = np.zeros(self.TAPS - 1, dtype=np.float32)
        self._phase = 0  # index in the next call's filtered output of the next sample to keep

    def push(self, samples: np.ndarray) -> np.ndarray:
        if samples.size == 0:
            return samples.astype(np.int16)
        buf = np.concatenate([self._tail, samples.astype(np.float32)])
        self._tail = buf[-(self.TAPS - 1):]
        windows = np.lib.stride_tricks.sliding_window_view(buf, self.TAPS)[self._phase::3]
        self._phase = (self._phase - samples.size) % 3
        out: np.ndarray = windows @ self._taps
        clipped: np.ndarray = np.clip(np.rint(out), -32768, 32767)
        return clipped.astype(np.int16)


def to_mono_s16(samples: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved s16 (any channel count) -> mono s16, by averaging."""
    if channels == 1:
        return samples.astype(np.int16, copy=False)
    frames = samples.reshape(-1, channels).astype(np.int32)
    mono: np.ndarray = frames.sum(axis=1) // channels
    return mono.astype(np.int16)


def is_silent(samples: np.ndarray, threshold: int = 300) -> bool:
    return samples.size == 0 or int(np.abs(samples.astype(np.int32)).max()) < threshold
