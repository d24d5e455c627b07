"""Run blocking model code off the event loop, with streaming, prompt cancellation, and the
waiting work served by deadline.

Each back-end owns one model thread: the models are not safe to call from two threads at
once, and one thread per model keeps the three models from piling up more threads than the
two cores can run. A back-end that holds several copies of its model (Piper: two small ONNX
sessions) names `workers`: that many threads serve its one queue, each with its own copy
(`worker()` says which), so two callers' first pieces are made at once. The first worker
takes the work whenever it is free, the next only while those before it are busy: a caller
alone is served as with one thread.

Work waiting for a model thread is served earliest deadline first, not in arrival order: with
many callers, every waiting caller's first clause (its deadline is the moment the caller
stopped speaking: already past) goes before the rest of anyone's reply (due only when the audio
before it has played out). Work without a deadline is due when it was submitted, so among
itself it stays first come, first served.

Work that can be batched (several callers' short STT windows in one encoder call) names a
batch key and is taken with the other waiting items of its key (`services.batching`).

Work nobody waits for yet (the rest of a reply, due when the audio before it has played out)
also gives way across models: while another model thread runs work that is due (a caller
waiting in silence: an STT turn, a first clause, a first piece), it waits, until `lead_s`
before its own deadline. On 2 cores one caller's TTS running ahead otherwise took the cores
from the next caller's first clause (4 callers asking at once: first clause p50 1.2 s).

`others_busy(me)` says whether another model thread of this process is at work right now: a
model that spreads one call over several cores (llama.cpp) runs on one core then, since
threads that wait for each other at every step crawl when a core is taken (measured at load:
7-10 times slower on 2 threads than on 1).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from voxline.services import batching
from voxline.services.batching import Batch

T = TypeVar("T")
_DONE = object()
LEAD_S = 0.0  # work not yet due gives way to others' due work until this long before its deadline (0: never)
POLL_S = 0.01  # how often work that gives way looks again
# The deadline (time.time()) of the model work the current task asks for; None: due now.
deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("voxline_model_deadline", default=None)


Work = Callable[[], Any] | Batch
_threads: weakref.WeakSet[ModelThread] = weakref.WeakSet()


def others_busy(me: ModelThread, among: Iterable[ModelThread] | None = None) -> bool:
    """Whether a model thread other than `me` (and than those that do not share the cores) is running
    work now; `among`: these threads instead of every one in the process."""
    return any(t.busy for t in list(_threads if among is None else among) if t is not me and t.shares_cores)


def others_urgent(me: ModelThread, among: Iterable[ModelThread] | None = None) -> bool:
    """Whether a model thread other than `me` (or another worker of `me`) is running work that is
    due (someone waits for it now)."""
    return me.sibling_urgent() or any(t.urgent for t in list(_threads if among is None else among)
                                      if t is not me and t.shares_cores)


def gives_way(me: ModelThread) -> bool:
    """Whether `me`'s work ahead waits now: giving way is on and another model runs due work."""
    lead = LEAD_S if me.lead_s is None else me.lead_s
    return lead > 0 and others_urgent(me)


def configure(lead_s: float) -> None:
    """How long before its deadline work stops giving way to others' due work (`model_yield_lead_s`)."""
    global LEAD_S
    LEAD_S = max(0.0, lead_s)


class ModelThread:
    """One named thread (or `workers` threads) for one model, serving its queue earliest deadline first."""

    def __init__(self, name: str, clock: Callable[[], float] = time.time, shares_cores: bool = True,
                 lead_s: float | None = None, workers: int = 1) -> None:
        self.name = name
        self.clock = clock
        self.shares_cores = shares_cores  # False: its work is too small to count as busy (VAD windows)
        self.lead_s = lead_s  # None: the process's `LEAD_S`
        self.workers = max(1, workers)
        self._busy = [False] * self.workers  # each worker running work now (read by `others_busy`)
        # Each worker's work in hand is due (someone waits for it); read by `others_urgent`. Work
        # that steps several callers at once (the LLM) sets it for each step.
        self._urgent = [False] * self.workers
        self._local = threading.local()
        _threads.add(self)
        self._heap: list[tuple[float, int, Work, Future[Any]]] = []
        self._seq = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._threads: list[threading.Thread] = []

    @property
    def busy(self) -> bool:
        return any(self._busy)

    @property
    def urgent(self) -> bool:
        """A worker is running work that is due."""
        return any(b and u for b, u in zip(self._busy, self._urgent))

    @urgent.setter
    def urgent(self, value: bool) -> None:
        """The calling worker's work in hand is (not) due; from outside a worker: the first's."""
        self._urgent[self.worker()] = value

    def worker(self) -> int:
        """Which worker of this model the calling thread is (0 outside them)."""
        return int(getattr(self._local, "index", 0))

    def sibling_urgent(self) -> bool:
        """Another worker of this model runs due work (the calling thread's own work aside)."""
        me = getattr(self._local, "index", None)
        return any(b and u for i, (b, u) in enumerate(zip(self._busy, self._urgent)) if i != me)

    def submit(self, fn: Callable[[], T], due: float | None = None) -> Future[T]:
        """Queue `fn` for the model thread, due at `due` (default: the task's `deadline`, else now)."""
        return self._queue(fn, due)

    def submit_batch(self, key: str, item: Any, run: Callable[[list[Any]], list[T]], limit: int,
                     due: float | None = None) -> Future[T]:
        """Queue `item`, to be run by `run` together with the other waiting items of `key` (at most `limit`)."""
        return self._queue(Batch(key, item, run, max(1, limit)), due)

    async def run_batch(self, key: str, item: Any, run: Callable[[list[Any]], list[T]], limit: int) -> T:
        return await asyncio.wrap_future(self.submit_batch(key, item, run, limit))

    def _queue(self, fn: Work, due: float | None) -> Future[Any]:
        future: Future[Any] = Future()
        when = due if due is not None else deadline.get()
        with self._ready:
            if self._closed:
                raise RuntimeError(f"model thread {self.name} is closed")
            heapq.heappush(self._heap, (self.clock() if when is None else when, next(self._seq), fn, future))
            if not self._threads:
                for i in range(self.workers):
                    name = f"voxline-{self.name}" + (f"-{i}" if i else "")
                    self._threads.append(threading.Thread(target=self._serve, args=(i,), name=name, daemon=True))
                    self._threads[-1].start()
            self._ready.notify_all()  # each worker sees whether it is the one to take it
        return future

    def _serve(self, index: int) -> None:
        self._local.index = index
        while True:
            with self._ready:
                while True:
                    if not self._heap:
                        if self._closed:
                            return
                        self._ready.wait()
                        continue
                    if not all(self._busy[:index]):  # a worker before this one is free: it takes the work
                        self._ready.wait()
                        continue
                    wait_s = self._give_way_s(self._heap[0][0])
                    if wait_s <= 0:
                        break
                    self._ready.wait(wait_s)  # a new item, or look again
                when, _, fn, future = heapq.heappop(self._heap)
                batch: list[tuple[Batch, Future[Any]]] = []
                if isinstance(fn, Batch):
                    batch, self._heap = batching.take(self._heap, fn, future)
                self._urgent[index] = when <= self.clock()
                self._busy[index] = True
                if self._heap and index + 1 < self.workers:
                    self._ready.notify_all()  # the next worker may take what is left
            self._run(fn, future, batch)

    def _give_way_s(self, when: float) -> float:
        """How long the item due at `when` waits before looking again (0: it runs now): work not
        due within the lead waits while another model thread runs due work."""
        lead = LEAD_S if self.lead_s is None else self.lead_s
        if lead <= 0 or when - self.clock() <= lead or not others_urgent(self):
            return 0.0
        return min(POLL_S, when - lead - self.clock())

    def _done(self) -> None:
        """The work in hand ended: `busy` (and `urgent`) clear before its caller hears, so a
        caller that reads `others_busy` after its result never sees its own finished call."""
        i = self.worker()
        self._busy[i] = self._urgent[i] = False

    def _resolve(self, future: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
        self._done()
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def _run(self, fn: Work, future: Future[Any], batch: list[tuple[Batch, Future[Any]]]) -> None:
        try:
            if isinstance(fn, Batch):
                batching.run(fn, batch, self._resolve)
                return
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
                self._resolve(future, error=exc)
            else:
                self._resolve(future, result)
        finally:
            self._done()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        ctx = contextvars.copy_context()
        return await asyncio.wrap_future(self.submit(lambda: ctx.run(fn, *args)))

    async def stream(self, make: Callable[[threading.Event], Iterator[T]]) -> AsyncIterator[T]:
        """Iterate `make(stop)` in the model thread, yielding items as they come.

        When the consumer stops early (cancelled by barge-in, or breaks), `stop` is set and
        the producer ends at its next item, so the thread is free for the next turn.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()
        ctx = contextvars.copy_context()

        def produce() -> None:
            try:
                for item in make(stop):
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, item)
            except BaseException as exc:  # noqa: BLE001 - delivered to the consumer, not lost in the thread
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        future = self.submit(lambda: ctx.run(produce))

        def never_ran(f: Future[Any]) -> None:
            if f.cancelled():  # the thread was closed before this stream's turn came
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, RuntimeError(f"model thread {self.name} closed"))
                except RuntimeError:
                    pass  # the loop is gone too

        future.add_done_callback(never_ran)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            if not future.done():
                future.cancel()  # still waiting its turn: it never runs
                # Do not wait here: a cancelled turn must not hold the caller up.

    def close(self) -> None:
        with self._ready:
            self._closed = True
            pending, self._heap = self._heap, []
            self._ready.notify_all()
        for *_, future in pending:
            future.cancel()

    def join(self, timeout_s: float = 5.0) -> bool:
        """After `close`: wait (bounded) for the work in hand to end; False if it did not.

        Why: an interpreter that exits while a daemon model thread is inside native code
        (onnxruntime, llama.cpp) aborts (`terminate called without an active exception`,
        exit 134), so a process that stops joins its model threads first.
        """
        end = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self._threads if t is not threading.current_thread())

    async def aclose(self, timeout_s: float = 5.0) -> bool:
        """`close`, then `join` off the event loop."""
        self.close()
        return await asyncio.to_thread(self.join, timeout_s)
