"""Run blocking model code off the event loop, with streaming and prompt cancellation.

Each back-end owns one single-thread executor: the models are not safe to call from two
threads at once, and one thread per model keeps the three models from piling up more
threads than the two cores can run.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class ModelThread:
    """A named single-thread executor for one model."""

    def __init__(self, name: str) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"voxline-{name}")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(self.executor, lambda: ctx.run(fn, *args))

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

        future = loop.run_in_executor(self.executor, lambda: ctx.run(produce))
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
                # Do not wait here: a cancelled turn must not hold the caller up.
                future.add_done_callback(lambda f: f.exception())

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
