"""Streaming Silero VAD (the ONNX model shipped inside faster-whisper), run with onnxruntime.

One `SileroModel` (an onnxruntime session, safe to share) serves many `SileroStream`s, one per
session, each carrying the recurrent state (h, c) and the 64-sample context the model needs
between 512-sample (32 ms at 16 kHz) windows. faster-whisper's own wrapper resets that state
on every call, so it cannot stream.
"""

from __future__ import annotations

import os

import numpy as np

WINDOW = 512  # samples at 16 kHz = 32 ms
CONTEXT = 64
SAMPLE_RATE = 16_000


def model_path() -> str:
    import faster_whisper

    return os.path.join(os.path.dirname(faster_whisper.__file__), "assets", "silero_vad_v6.onnx")


class SileroModel:
    def __init__(self, path: str | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(path or model_path(), options, providers=["CPUExecutionProvider"])

    def stream(self) -> "SileroStream":
        return SileroStream(self)


class SileroStream:
    """Feed 16 kHz s16 PCM of any length; get each 32 ms window back with its speech probability."""

    def __init__(self, model: SileroModel) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)
        self.pending = b""

    def process(self, pcm: bytes) -> list[tuple[bytes, float]]:
        """Each complete 32 ms window now available, as (its PCM, its speech probability)."""
        self.pending += pcm
        out: list[tuple[bytes, float]] = []
        while len(self.pending) >= WINDOW * 2:
            raw, self.pending = self.pending[: WINDOW * 2], self.pending[WINDOW * 2:]
            window = np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0
            x = np.concatenate([self.context, window])[None, :]
            prob, self.h, self.c = self.model.session.run(None, {"input": x, "h": self.h, "c": self.c})
            self.context = window[-CONTEXT:]
            out.append((raw, float(np.asarray(prob).reshape(-1)[0])))
        return out
