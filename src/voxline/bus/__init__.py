"""The message bus between media servers and agents: one interface, memory and Kafka back-ends."""

from voxline.bus.base import Bus, Message, Subscription
from voxline.bus.topics import TOPICS, Topic

__all__ = ["Bus", "Message", "Subscription", "TOPICS", "Topic", "create_bus"]


def create_bus(settings: "Settings") -> Bus:  # noqa: F821 - imported lazily to keep bus light
    """The bus named by `settings.bus`: `memory` (one process) or `kafka`."""
    if settings.bus == "memory":
        from voxline.bus.memory import MemoryBus

        return MemoryBus()
    if settings.bus == "kafka":
        from voxline.bus.kafka import KafkaBus

        return KafkaBus(settings)
    raise ValueError(f"unknown bus {settings.bus!r} (expected 'memory' or 'kafka')")
