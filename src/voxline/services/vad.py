"""Streaming Silero VAD (the ONNX model shipped inside faster-whisper), run with onnxruntime.

One `SileroModel` (an onnxruntime session, safe to share) serves many `SileroStream`s, one per
session, each carrying the recurrent state (h, c) and the 64-sample context the model needs
between 512-sample (32 ms at 16 kHz) windows. faster-whisper's own wrapper resets that state
on every call, so it cannot stream.

`VadBatcher` is what sessions call. By default it runs the model right in the event loop:
a window takes ~0.1 ms (like encoding an Opus frame), less than handing it to a thread,
and with a hundred callers a VAD thread made the loop wait for the GIL after every packet
(measured: 30 callers, 88 % CPU and late frames with the thread, 77 % and none without).
With a thread (`vad_in_thread`), every session with a window ready goes in ONE trip.
"""

from __future__ import annotations

import asyncio
import os
from typing import Sequence

import numpy as np

from voxline.services.threads import ModelThread

WINDOW = 512  # samples at 16 kHz = 32 ms
WINDOW_BYTES = WINDOW * 2
CONTEXT = 64
SAMPLE_RATE = 16_000

Windows = list[tuple[bytes, float]]  # (32 ms of s16 PCM, its speech probability)


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

    def run_windows(self, streams: Sequence["SileroStream"]) -> list[Windows]:
        """Every complete window pending in each of `streams` (blocking; one model call per stream).

        The model's first input axis is time: a stream's pending windows go in one call, each
        row its 64 samples of context plus 512 new ones, and (h, c) come out after the last.
        The recurrent state has no batch axis, so streams cannot share a call.
        """
        return [self._run(s) for s in streams]

    def _run(self, stream: "SileroStream") -> Windows:
        n = len(stream.pending) // WINDOW_BYTES
        if n == 0:
            return []
        raw = stream.pending[: n * WINDOW_BYTES]
        stream.pending = stream.pending[n * WINDOW_BYTES:]
        audio = np.empty(CONTEXT + n * WINDOW, dtype=np.float32)
        audio[:CONTEXT] = stream.context
        np.multiply(np.frombuffer(raw, dtype=np.int16), 1 / 32768.0, out=audio[CONTEXT:], casting="unsafe")
        rows = np.empty((n, CONTEXT + WINDOW), dtype=np.float32)
        for i in range(n):
            rows[i] = audio[i * WINDOW:i * WINDOW + CONTEXT + WINDOW]
        prob, stream.h, stream.c = self.session.run(None, {"input": rows, "h": stream.h, "c": stream.c})
        stream.context = audio[-CONTEXT:].copy()
        probs = np.asarray(prob, dtype=np.float32).reshape(-1)
        return [(raw[i * WINDOW_BYTES:(i + 1) * WINDOW_BYTES], float(probs[i])) for i in range(n)]


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

    def feed(self, pcm: bytes) -> bool:
        """Add audio; True when at least one complete window waits for the model."""
        self.pending += pcm
        return len(self.pending) >= WINDOW_BYTES

    def process(self, pcm: bytes) -> Windows:
        """Each complete 32 ms window now available (blocking; one stream, one call per window)."""
        self.feed(pcm)
        return self.model.run_windows([self])[0]


class VadBatcher:
    """The asyncio side: sessions await their windows; the loop or the VAD thread serves them.

    In a thread there is no timer: a request that finds the thread idle runs at once (alone);
    requests that arrive while a batch runs wait for it and then go together. So one caller
    pays no latency and a hundred share one thread hand-off per round.
    """

    def __init__(self, model: SileroModel, thread: ModelThread | None = None) -> None:
        self.model = model
        self.thread = thread
        self._waiting: list[tuple[SileroStream, asyncio.Future[Windows]]] = []
        self._busy = False
        self.calls = 0  # thread calls made (for benchmarks and tests)

    async def process(self, stream: SileroStream, pcm: bytes) -> Windows:
        if not stream.feed(pcm):
            return []
        if self.thread is None:
            return self.model.run_windows([stream])[0]
        future: asyncio.Future[Windows] = asyncio.get_running_loop().create_future()
        self._waiting.append((stream, future))
        if not self._busy:
            self._busy = True
            asyncio.ensure_future(self._serve())
        return await future

    async def _serve(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                streams = list({id(s): s for s, _ in batch}.values())  # one entry per stream
                self.calls += 1
                try:
                    assert self.thread is not None
                    results = await self.thread.run(self.model.run_windows, streams)
                except Exception as exc:  # noqa: BLE001 - every waiter hears of it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                by_stream = {id(s): r for s, r in zip(streams, results)}
                for stream, future in batch:
                    if not future.done():
                        future.set_result(by_stream.pop(id(stream), []))
        finally:
            self._busy = False
