"""Smart Turn v3: an audio end-of-turn model, run at the caller's pauses and shared by sessions.

The ONNX file ships inside the `pipecat-ai` wheel (BSD-2-Clause; installed `--no-deps`, and
never imported: only the file is used, as the Silero VAD is taken from faster-whisper's
wheel). Input: Whisper log-mel of the last 8 s at 16 kHz, zero-padded at the front,
(batch, 80, 800); output: the probability that the turn is complete. ~40 ms a call here,
so it runs only when a caller pauses, never per window, in its own thread; requests that
arrive while a batch runs go together in the next one, so idle listeners cost nothing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from voxline.services.threads import ModelThread

log = logging.getLogger(__name__)
RATE = 16_000
SECONDS = 8
N_FFT, HOP, N_MELS = 400, 160, 80
MAX_BATCH = 16
_MODEL_FILE = ("audio", "turn", "smart_turn", "data", "smart-turn-v3.2-cpu.onnx")


def model_path() -> Path | None:
    """The model file inside the installed pipecat-ai wheel, found without importing pipecat."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*_MODEL_FILE)
        if path.is_file():
            return path
    return None


def _mel_filters() -> np.ndarray:
    """Whisper's 80 Slaney mel filters (80, 201), from faster-whisper (already a dependency)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    return np.asarray(FeatureExtractor(feature_size=N_MELS).mel_filters, dtype=np.float64)


class LogMel:
    """Whisper-style log-mel of the last 8 s, as Smart Turn v3 was trained on (numpy only)."""

    def __init__(self) -> None:
        self.filters = _mel_filters()
        self.window = np.hanning(N_FFT + 1)[:-1]  # periodic Hann, as torch.hann_window

    def __call__(self, pcm: bytes) -> np.ndarray:
        x = np.frombuffer(pcm, dtype=np.int16)[-RATE * SECONDS:].astype(np.float32) / 32768.0
        x = np.pad(x, (RATE * SECONDS - x.size, 0))
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        padded = np.pad(x.astype(np.float64), (N_FFT // 2, N_FFT // 2), mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
        power = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** 2  # (frames, 201)
        mel = np.log10(np.maximum(self.filters @ power.T, 1e-10))[:, :-1]  # (80, 800)
        mel = np.maximum(mel, mel.max() - 8.0)
        out: np.ndarray = ((mel + 4.0) / 4.0).astype(np.float32)
        return out


class SmartTurn:
    """Scores turn audio (s16 16 kHz) as complete (1.0) or not (0.0); `None` without the model."""

    def __init__(self, path: Path | str | None = None, thread: ModelThread | None = None) -> None:
        self.path = Path(path) if path else model_path()
        self.session: Any = None  # onnxruntime.InferenceSession
        self.calls = 0  # model runs (batches), for tests and benchmarks
        self._waiting: list[tuple[bytes, asyncio.Future[float | None]]] = []
        self._busy = False
        self._server: asyncio.Task[None] | None = None
        self._thread = thread or ModelThread("turn-model")
        if self.path is None or not self.path.is_file():
            log.warning("end-of-turn model not found (install pipecat-ai --no-deps): "
                        "ends of turn are decided on silence and words only")
            return
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=["CPUExecutionProvider"])
        self.features = LogMel()

    @property
    def available(self) -> bool:
        return self.session is not None

    def run(self, clips: list[bytes]) -> list[float]:
        """Blocking: the scores of `clips` in one model call (call from the model thread)."""
        batch = np.stack([self.features(c) for c in clips])
        (logits,) = self.session.run(None, {"input_features": batch})
        self.calls += 1
        return [float(v) for v in np.asarray(logits).reshape(-1)]

    async def score(self, pcm: bytes) -> float | None:
        """The probability that the turn in `pcm` is complete; batched with other sessions' pauses."""
        if self.session is None:
            return None
        future: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((pcm, future))
        if not self._busy:
            self._busy = True
            self._server = asyncio.create_task(self._serve())
        return await future

    async def _serve(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                live = [(pcm, f) for pcm, f in batch if not f.done()]
                if not live:
                    continue
                try:
                    scores: list[float | None] = list(await self._thread.run(self.run, [p for p, _ in live]))
                except Exception:  # a failed score is "no model", never a stuck turn
                    log.exception("end-of-turn model failed")
                    scores = [None] * len(live)
                for (_, future), value in zip(live, scores):
                    if not future.done():
                        future.set_result(value)
        finally:
            self._busy = False

    def close(self) -> None:
        self._thread.close()
