"""Streaming Silero VAD (the ONNX model shipped inside faster-whisper), run with onnxruntime.

One `SileroModel` (an onnxruntime session, safe to share) serves many `SileroStream`s, one per
session, each carrying the recurrent state (h, c) and the 64-sample context the model needs
between 512-sample (32 ms at 16 kHz) windows. faster-whisper's own wrapper resets that state
on every call, so it cannot stream.

`VadBatcher` is what sessions call: every session with a window ready goes to the model
together, in one batched call (see `batched_model`), in the event loop or in the VAD thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

import numpy as np

from voxline.services.threads import ModelThread

log = logging.getLogger(__name__)
WINDOW = 512  # samples at 16 kHz = 32 ms
WINDOW_BYTES = WINDOW * 2
CONTEXT = 64
SAMPLE_RATE = 16_000

Windows = list[tuple[bytes, float]]  # (32 ms of s16 PCM, its speech probability)


def model_path() -> str:
    import faster_whisper

    return os.path.join(os.path.dirname(faster_whisper.__file__), "assets", "silero_vad_v6.onnx")


def batched_model(path: str) -> bytes | None:
    """The same Silero model with its LSTM's batch axis opened, or None if it cannot be.

    As shipped, the model's first input axis is time and (h, c) are fixed at batch 1, so
    sessions cannot share a call. One edit changes that: the Transpose in front of the LSTM
    makes the rows the LSTM's batch instead of its time steps, and h/c/hn/cn get a free batch
    dimension. A row is then one window of one stream; the weights and every other node stay
    as they are (the outputs are checked equal to the original's when loaded). Half the cost
    per window: ~50 us in a batch of 10 or more, ~95 us alone.
    """
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(path)
    made = {node.output[0]: node for node in model.graph.node if node.output}
    lstm = next((node for node in model.graph.node if node.op_type == "LSTM"), None)
    feed = made.get(lstm.input[0]) if lstm is not None else None
    perm = next((a for a in feed.attribute if a.name == "perm"), None) if feed is not None else None
    if feed is None or feed.op_type != "Transpose" or perm is None or list(perm.ints) != [0, 2, 1]:
        return None
    perm.ints[:] = [2, 0, 1]  # (rows, 1, features): rows were time steps; now (1, rows, features)
    for value in [*model.graph.input, *model.graph.output]:
        if value.name in ("h", "c", "hn", "cn"):
            dim = value.type.tensor_type.shape.dim[1]
            dim.ClearField("dim_value")
            dim.dim_param = "batch"
    return bytes(model.SerializeToString())


class SileroModel:
    def __init__(self, path: str | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        path = path or model_path()
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.batched = None
        try:
            batched = batched_model(path)
            if batched is not None:
                self.batched = ort.InferenceSession(batched, options, providers=["CPUExecutionProvider"])
                if not self._batched_agrees():
                    self.batched = None
        except Exception:  # noqa: BLE001 - a model this edit does not fit: sessions are run one by one
            log.warning("Silero VAD: batched model unavailable; running one call per session", exc_info=True)
            self.batched = None

    def stream(self) -> SileroStream:
        return SileroStream(self)

    def run_windows(self, streams: Sequence[SileroStream]) -> list[Windows]:
        """Every complete window pending in each of `streams` (blocking).

        Several streams with a window each go through the batched model in one call, round
        after round while windows remain; a stream alone takes all its windows in one call of
        the original model (its first axis is time).
        """
        out: list[Windows] = [[] for _ in streams]
        while True:
            ready = [i for i, s in enumerate(streams) if len(s.pending) >= WINDOW_BYTES]
            if len(ready) == 1 or (ready and self.batched is None):
                for i in ready:
                    out[i] += self._run(streams[i])
                return out
            if not ready:
                return out
            for i, window in zip(ready, self._step([streams[i] for i in ready])):
                out[i].append(window)

    def _step(self, streams: Sequence[SileroStream]) -> Windows:
        """One window of each stream, in one call of the batched model."""
        assert self.batched is not None
        rows = np.empty((len(streams), CONTEXT + WINDOW), dtype=np.float32)
        raws = []
        for row, s in enumerate(streams):
            raw, s.pending = s.pending[:WINDOW_BYTES], s.pending[WINDOW_BYTES:]
            raws.append(raw)
            rows[row, :CONTEXT] = s.context
            np.multiply(np.frombuffer(raw, dtype=np.int16), 1 / 32768.0, out=rows[row, CONTEXT:], casting="unsafe")
        h = np.concatenate([s.h for s in streams], axis=1)
        c = np.concatenate([s.c for s in streams], axis=1)
        prob, h, c = self.batched.run(None, {"input": rows, "h": h, "c": c})
        probs = np.asarray(prob, dtype=np.float32).reshape(-1)
        for row, s in enumerate(streams):
            s.h = h[:, row:row + 1].copy()
            s.c = c[:, row:row + 1].copy()
            s.context = rows[row, -CONTEXT:].copy()
        return [(raw, float(p)) for raw, p in zip(raws, probs)]

    def _batched_agrees(self) -> bool:
        """The edited model gives the original's outputs (two streams, a few windows)."""
        rng = np.random.default_rng(7)
        a, b, a2, b2 = self.stream(), self.stream(), self.stream(), self.stream()
        for _ in range(4):
            pcm = [(rng.standard_normal(WINDOW) * 3000).astype(np.int16).tobytes() for _ in range(2)]
            a.feed(pcm[0]), b.feed(pcm[1]), a2.feed(pcm[0]), b2.feed(pcm[1])
            together = self._step([a, b])
            alone = self._run(a2) + self._run(b2)
            if any(abs(x[1] - y[1]) > 1e-4 for x, y in zip(together, alone)):
                return False
        return True

    def _run(self, stream: SileroStream) -> Windows:
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


BUSY_RATE = 200.0  # windows a second (~6 callers talking): from here on, batches are worth a wait


class VadBatcher:
    """The asyncio side: sessions await their windows; the loop or the VAD thread serves them.

    In the loop, requests are served together right after the loop turn they came in
    (`call_soon`); when more than `BUSY_RATE` windows a second come (many callers), the first
    request of a batch waits up to `gather_ms` for others: callers' packets arrive spread over
    each 20 ms, and one loop turn held 1.6 streams on average at 40 callers, too few to gain
    from batching (a 10 ms wait makes it ~12). In a thread, a request that finds the thread
    idle runs at once; requests that arrive while a batch runs wait for it and then go
    together. So one caller pays no latency and a hundred share one model call per round.
    """

    def __init__(self, model: SileroModel, thread: ModelThread | None = None, gather_ms: float = 10.0) -> None:
        self.model = model
        self.thread = thread
        self.gather_s = max(0.0, gather_ms / 1000)
        self._waiting: list[tuple[SileroStream, asyncio.Future[Windows]]] = []
        self._busy = False
        self._serving: asyncio.Task[None] | None = None  # the thread batch in flight, held so it is not lost
        self._rate = 0.0  # requests a second, measured over the last second
        self._counted = 0
        self._since = 0.0
        self.calls = 0  # batches served (for benchmarks and tests)

    async def process(self, stream: SileroStream, pcm: bytes) -> Windows:
        if not stream.feed(pcm):
            return []
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._counted += 1
        if now - self._since >= 1.0:
            self._rate = self._counted / (now - self._since) if self._since else 0.0
            self._counted, self._since = 0, now
        future: asyncio.Future[Windows] = loop.create_future()
        self._waiting.append((stream, future))
        if not self._busy:
            self._busy = True
            if self.thread is None and self.gather_s and self._rate >= BUSY_RATE:
                loop.call_later(self.gather_s, self._serve_in_loop)
            elif self.thread is None:
                loop.call_soon(self._serve_in_loop)
            else:
                self._serving = asyncio.create_task(self._serve_in_thread())
        return await future

    def _serve_in_loop(self) -> None:
        batch, self._waiting = self._waiting, []
        self._busy = False
        self._serve(batch, None)

    async def _serve_in_thread(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                streams = self._streams(batch)
                try:
                    assert self.thread is not None
                    results = await self.thread.run(self.model.run_windows, streams)
                except Exception as exc:  # noqa: BLE001 - every waiter hears of it
                    self._serve(batch, exc)
                    continue
                self._serve(batch, results)
        finally:
            self._busy = False

    @staticmethod
    def _streams(batch: list[tuple[SileroStream, asyncio.Future[Windows]]]) -> list[SileroStream]:
        return list({id(s): s for s, _ in batch}.values())  # one entry per stream

    def _serve(self, batch: list[tuple[SileroStream, asyncio.Future[Windows]]],
               results: list[Windows] | Exception | None) -> None:
        """Hand each waiter its stream's windows (computing them here when `results` is None)."""
        self.calls += 1
        streams = self._streams(batch)
        if results is None:
            try:
                results = self.model.run_windows(streams)
            except Exception as exc:  # noqa: BLE001 - every waiter hears of it
                results = exc
        by_stream = {} if isinstance(results, Exception) else {id(s): r for s, r in zip(streams, results)}
        for stream, future in batch:
            if future.done():
                continue
            if isinstance(results, Exception):
                future.set_exception(results)
            else:
                future.set_result(by_stream.pop(id(stream), []))
