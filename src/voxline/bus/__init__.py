"""The message bus between media servers and agents: one interface, memory and Kafka back-ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from voxline.bus.base import Bus, Message, Subscription
from voxline.bus.topics import TOPICS, Topic

if TYPE_CHECKING:
    from voxline.config import Settings

__all__ = ["Bus", "Message", "Subscription", "TOPICS", "Topic", "create_bus"]


def create_bus(settings: Settings) -> Bus:
    """The bus named by `settings.bus`: `memory` (one process) or `kafka`."""
    if settings.bus == "memory":
        from voxline.bus.memory import MemoryBus

        return MemoryBus()
    if settings.bus == "kafka":
        from voxline.bus.kafka import KafkaBus

        return KafkaBus(settings)
    raise ValueError(f"unknown bus {settings.bus!r} (expected 'memory' or 'kafka')")
