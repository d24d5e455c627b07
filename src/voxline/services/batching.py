"""Model work that can be batched: several callers' items in one model call.

Work that names a batch key (several callers' short STT windows in one encoder call) is
queued on its model thread like any other; when the thread takes such an item, it takes the
other waiting items of the same key with it (the earliest due first, up to the batch's limit)
and runs them in one call, each caller getting its own result (or the call's error).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

Entry = tuple[float, int, Any, Future[Any]]  # a model thread's queue entry: (due, seq, work, future)
Resolve = Callable[..., None]  # the thread's `_resolve(future, result=..., error=...)`


class Batch:
    """One item of batchable work: `run(items)` returns one result per item, in order."""

    def __init__(self, key: str, item: Any, run: Callable[[list[Any]], list[Any]], limit: int) -> None:
        self.key, self.item, self.run, self.limit = key, item, run, limit


def take(heap: list[Entry], first: Batch, future: Future[Any]) -> tuple[list[tuple[Batch, Future[Any]]], list[Entry]]:
    """`first` and the waiting items of its key, the earliest due first; and the queue left."""
    batch = [(first, future)]
    mates = sorted(e for e in heap if isinstance(e[2], Batch) and e[2].key == first.key)
    taken = {id(e[3]) for e in mates[: first.limit - 1]}
    if not taken:
        return batch, heap
    batch += [(e[2], e[3]) for e in mates if id(e[3]) in taken]
    rest = [e for e in heap if id(e[3]) not in taken]
    heapq.heapify(rest)
    return batch, rest


def run(first: Batch, batch: list[tuple[Batch, Future[Any]]], resolve: Resolve) -> None:
    """Run the batch's live items (those not cancelled) in one call of `first.run`."""
    live = [(b, f) for b, f in batch if f.set_running_or_notify_cancel()]
    if not live:
        return
    try:
        results = first.run([b.item for b, _ in live])
        if len(results) != len(live):
            raise RuntimeError(f"a batch of {len(live)} gave {len(results)} results")
    except BaseException as exc:  # noqa: BLE001 - handed to every caller in the batch
        for _, f in live:
            resolve(f, error=exc)
        return
    for (_, f), result in zip(live, results):
        resolve(f, result)
