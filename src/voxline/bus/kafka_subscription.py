"""One consumer of the Kafka bus: an async iterator that outlives broker outages and lost logs."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import ConsumerStoppedError, IllegalStateError, KafkaError

from voxline.bus.base import Message, Subscription
from voxline.bus.topics import Topic

if TYPE_CHECKING:
    from voxline.bus.kafka import KafkaBus

log = logging.getLogger("voxline.bus.kafka")


class KafkaSubscription(Subscription):
    def __init__(self, bus: KafkaBus, consumer: AIOKafkaConsumer) -> None:
        self._bus = bus
        self._consumer = consumer
        self._closed = False
        self._watchdog = asyncio.create_task(self._watch_log_end(), name="kafka-log-end-watchdog")

    async def __anext__(self) -> Message:
        while not self._closed:
            try:
                record = await self._consumer.getone()
            except ConsumerStoppedError:
                break
            except KafkaError as exc:  # retriable or not: a consumer outlives a broker outage
                log.warning("kafka consumer: %s; retrying", exc)
                await asyncio.sleep(1.0 if exc.retriable else 2.0)
                continue
            key = record.key.decode("utf-8", "replace") if record.key else ""
            return Message(self._bus.logical(record.topic), key, record.value or b"")
        raise StopAsyncIteration

    async def _watch_log_end(self) -> None:
        """Reads a partition from its start again when the broker's log ends before our position.

        A broker that lost its log (tansu restarts empty; a topic deleted and re-created) starts
        offsets again at 0. tansu then answers fetches beyond the end with nothing, so the consumer
        would wait, silently skipping every new message until the new log grows past the old
        position. Everything in such a log was produced after the loss: read it from the start.
        """
        while not self._closed:
            await asyncio.sleep(1.0)
            for tp in list(self._consumer.assignment()):
                highwater = self._consumer.highwater(tp)  # from the last fetch response
                try:
                    async with asyncio.timeout(1.0):
                        position = await self._consumer.position(tp)
                except (TimeoutError, IllegalStateError, KafkaError):
                    continue
                if highwater is not None and position > highwater:
                    log.warning("kafka %s[%d]: position %d is past the log end %d (the broker lost its log); "
                                "reading the partition from its start", tp.topic, tp.partition, position, highwater)
                    await self._consumer.seek_to_beginning(tp)

    @property
    def assignment(self) -> set[tuple[Topic, int]]:
        """(topic, partition) pairs this member holds now: empty during a rebalance."""
        return {(self._bus.logical(tp.topic), tp.partition) for tp in self._consumer.assignment()}

    async def close(self) -> None:
        """Commits what was consumed and leaves the group (the others rebalance at once)."""
        if self._closed:
            return
        self._closed = True
        self._bus._subs.discard(self)
        self._watchdog.cancel()
        await asyncio.gather(self._watchdog, return_exceptions=True)
        await self._consumer.stop()
