"""Run blocking model code off the event loop, with streaming, prompt cancellation, and the
waiting work served by deadline.

Each back-end owns one model thread: the models are not safe to call from two threads at
once, and one thread per model keeps the three models from piling up more threads than the
two cores can run. Work waiting for a model thread is served earliest deadline first, not in
arrival order: with many callers, every waiting caller's first clause (its deadline is the
moment the caller stopped speaking: already past) goes before the rest of anyone's reply
(due only when the audio before it has played out). Work without a deadline is due when it
was submitted, so among itself it stays first come, first served.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()
# The deadline (time.time()) of the model work the current task asks for; None: due now.
deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("voxline_model_deadline", default=None)


class ModelThread:
    """One named thread for one model, serving its queue earliest deadline first."""

    def __init__(self, name: str, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.clock = clock
        self._heap: list[tuple[float, int, Callable[[], Any], Future[Any]]] = []
        self._seq = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[[], T], due: float | None = None) -> Future[T]:
        """Queue `fn` for the model thread, due at `due` (default: the task's `deadline`, else now)."""
        future: Future[T] = Future()
        when = due if due is not None else deadline.get()
        with self._ready:
            if self._closed:
                raise RuntimeError(f"model thread {self.name} is closed")
            heapq.heappush(self._heap, (self.clock() if when is None else when, next(self._seq), fn, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"voxline-{self.name}", daemon=True)
                self._thread.start()
            self._ready.notify()
        return future

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._heap and not self._closed:
                    self._ready.wait()
                if not self._heap:
                    return
                _, _, fn, future = heapq.heappop(self._heap)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
                future.set_exception(exc)

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
