"""The bus interface: publish bytes keyed by session ID, subscribe to topics, optionally in a group.

Semantics every back-end keeps (the Kafka ones are the reference):
- messages with the same key on the same topic arrive in publish order;
- subscribers with no group each get every message (broadcast);
- subscribers sharing a group split the keys between them, and one key maps to the same
  member for every topic of the subscription (the agent relies on audio.in and control of
  a session reaching the same agent);
- a quiet topic is normal: iteration simply waits;
- a broker outage never ends a caller's task: `publish` does not raise (a message that cannot
  be sent is counted and logged), iteration waits and resumes, and `healthy` says whether the
  broker answers (readiness probes report it).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from voxline.bus.topics import Topic


@dataclass(frozen=True, slots=True)
class Message:
    topic: Topic
    key: str
    value: bytes


class Subscription(abc.ABC):
    """An async iterator of messages; `close()` leaves the group and stops iteration."""

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> Message: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class Bus(abc.ABC):
    @abc.abstractmethod
    async def start(self) -> None:
        """Connect, and create or verify every topic."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def publish(self, topic: Topic, key: str, value: bytes) -> None:
        """Send, or count and log the failure: never raises for a broker that is down."""

    @property
    def healthy(self) -> bool:
        """The broker answers (always true in one process)."""
        return True

    @abc.abstractmethod
    async def subscribe(self, topics: Sequence[Topic], group: str | None = None) -> Subscription:
        """Start receiving messages published from now on to `topics`."""
