"""Read any audio file PyAV (FFmpeg) decodes as mono s16 at one rate: WAV of any header
(WAVE_FORMAT_EXTENSIBLE as sox writes, 24-bit, float), MP3, FLAC, Ogg/Opus, M4A...

Python's `wave` module reads only plain PCM headers; a caller's file is whatever their tool
wrote. Decoding is bounded (`max_s`) so a huge or hostile file cannot fill memory.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from voxline.audio.resample import resample_s16

MAX_S = 600.0  # ten minutes of audio at most


def read_audio(path: str | Path, rate: int = 48_000, max_s: float = MAX_S) -> np.ndarray:
    """The first audio stream of `path`, downmixed to mono, as s16 samples at `rate`.

    Raises ValueError (with the file's name and FFmpeg's reason) for what cannot be decoded,
    and for a file with no audio or longer than `max_s`.
    """
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError(f"{path}: no audio stream in the file")
            stream = container.streams.audio[0]
            src_rate = int(stream.codec_context.sample_rate or 0)
            if src_rate <= 0:
                raise ValueError(f"{path}: the audio stream has no sample rate")
            # Downmix to mono s16 at the file's own rate; soxr does the rate change, as for every
            # other path into the models.
            mixer = av.AudioResampler(format="s16", layout="mono", rate=src_rate)
            total, limit = 0, int(max_s * src_rate)
            for frame in container.decode(stream):
                for out in mixer.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    total += samples.size
                    if total > limit:
                        raise ValueError(f"{path}: longer than {max_s:.0f} s")
                    chunks.append(samples)
            chunks.extend(out.to_ndarray().reshape(-1) for out in mixer.resample(None))
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: not an audio file FFmpeg can decode ({exc})") from exc
    mono = np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, dtype=np.int16)
    if not mono.size:
        raise ValueError(f"{path}: the audio stream is empty")
    return np.frombuffer(resample_s16(mono.tobytes(), src_rate, rate), dtype=np.int16)
