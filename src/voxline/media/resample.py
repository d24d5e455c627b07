"""PCM helpers: resampling (soxr) and channel mixing for s16le audio."""

from __future__ import annotations

import numpy as np
import soxr


def resample_s16(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample mono s16le in one shot (whole utterances; streams use `StreamResampler`)."""
    if from_rate == to_rate or not pcm:
        return pcm
    x = np.frombuffer(pcm, dtype=np.int16)
    return soxr.resample(x, from_rate, to_rate).astype(np.int16).tobytes()


class StreamResampler:
    """Resample a mono s16 stream chunk by chunk without clicks at the chunk edges."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.passthrough = from_rate == to_rate
        self._rs = None if self.passthrough else soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16", quality="HQ")

    def push(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._rs is None:
            return samples
        return self._rs.resample_chunk(samples, last=last)


def to_mono_s16(samples: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved s16 (any channel count) -> mono s16, by averaging."""
    if channels == 1:
        return samples.astype(np.int16, copy=False)
    frames = samples.reshape(-1, channels).astype(np.int32)
    return (frames.sum(axis=1) // channels).astype(np.int16)


def is_silent(samples: np.ndarray, threshold: int = 300) -> bool:
    return samples.size == 0 or int(np.abs(samples.astype(np.int32)).max()) < threshold
