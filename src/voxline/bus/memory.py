"""In-process bus on asyncio queues: the default for the one-process `voxline run`."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import defaultdict
from collections.abc import Sequence

from voxline.bus.base import Bus, Message, Subscription
from voxline.bus.topics import Topic

log = logging.getLogger(__name__)
_CLOSED = object()


class _MemorySubscription(Subscription):
    def __init__(self, bus: MemoryBus, topics: frozenset[Topic], group: str | None, maxsize: int) -> None:
        self.bus = bus
        self.topics = topics
        self.group = group
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, message: Message) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 1000 == 0:
                log.warning("memory bus subscriber is full, dropped %d", self.dropped, extra={"session_id": message.key})

    async def __anext__(self) -> Message:
        item = await self.queue.get()
        if item is _CLOSED:
            self.queue.put_nowait(_CLOSED)
            raise StopAsyncIteration
        assert isinstance(item, Message)
        return item

    async def close(self) -> None:
        self.bus._remove(self)
        try:
            self.queue.put_nowait(_CLOSED)
        except asyncio.QueueFull:
            self.queue.get_nowait()
            self.queue.put_nowait(_CLOSED)


class MemoryBus(Bus):
    def __init__(self, queue_size: int = 20_000) -> None:
        self.queue_size = queue_size
        self._subs: list[_MemorySubscription] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for sub in list(self._subs):
            await sub.close()

    async def publish(self, topic: Topic, key: str, value: bytes) -> None:
        message = Message(Topic(topic), key, value)
        groups: dict[str, list[_MemorySubscription]] = defaultdict(list)
        for sub in self._subs:
            if message.topic not in sub.topics:
                continue
            if sub.group is None:
                sub.offer(message)
            else:
                groups[sub.group].append(sub)
        for members in groups.values():
            # Stable across topics: the same key reaches the same member for all its topics.
            members[zlib.crc32(key.encode()) % len(members)].offer(message)

    async def subscribe(self, topics: Sequence[Topic], group: str | None = None) -> Subscription:
        sub = _MemorySubscription(self, frozenset(Topic(t) for t in topics), group, self.queue_size)
        self._subs.append(sub)
        return sub

    def _remove(self, sub: _MemorySubscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
