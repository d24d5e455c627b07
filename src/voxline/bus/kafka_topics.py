"""The Kafka bus's topics: made (or verified) before anything is published, each with a retention.

Every topic is created with CreateTopics first and described after (on some brokers
metadata auto-creates topics); one with another partition count, or an audio topic kept
longer than configured, is reported at start-up (voxline never alters a topic it did not make).
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from voxline.bus.kafka_config import TOPIC_EXISTS, retention_problems, topic_configs, topic_errors
from voxline.bus.topics import TOPICS, Topic
from voxline.config import Settings

log = logging.getLogger("voxline.bus.kafka")  # one logger for the bus, as before the split


class KafkaBusError(RuntimeError):
    """The broker could not be reached or its topics are not usable."""


def _name(settings: Settings, topic: Topic) -> str:
    return settings.topic_prefix + Topic(topic).value


def _logical(settings: Settings, name: str) -> Topic:
    return Topic(name[len(settings.topic_prefix):])


async def ensure_topics(settings: Settings, connection: dict[str, Any],
                        replication_factor: int | None) -> dict[Topic, int]:
    """Creates missing topics, then checks every one; returns each topic's partition count.

    `replication_factor=None` means min(3, brokers in the cluster).
    """
    partitions = settings.topic_partitions
    admin = AIOKafkaAdminClient(**connection, request_timeout_ms=10_000)
    try:
        await admin.start()
        replication = replication_factor
        if replication is None:
            replication = max(1, min(3, len((await admin.describe_cluster())["brokers"])))
        names = [_name(settings, t) for t in TOPICS]
        response = await admin.create_topics(
            [NewTopic(_name(settings, t), partitions, replication, topic_configs=topic_configs(settings, t))
             for t in TOPICS])
        for name, code, message in topic_errors(response):
            if code not in (0, TOPIC_EXISTS):
                raise KafkaBusError(f"cannot create topic {name}: error {code} {message or ''}")
        # Describe only after creating: on some brokers metadata auto-creates topics.
        counts: dict[Topic, int] = {}
        for desc in await admin.describe_topics(names):
            if desc["error_code"]:
                raise KafkaBusError(f"topic {desc['topic']} unusable: error {desc['error_code']}")
            counts[_logical(settings, desc["topic"])] = len(desc["partitions"])
        await _check_retention(settings, admin)
    finally:
        await admin.close()
    for topic, count in counts.items():
        if count != partitions:
            log.warning("topic %s has %d partitions, configured %d",
                        _name(settings, topic), count, partitions)
    if counts.get(Topic.AUDIO_IN) != counts.get(Topic.CONTROL):
        raise KafkaBusError("audio.in and control must have the same partition count "
                            f"(a session's messages must reach one agent): {counts}")
    return counts


async def _check_retention(settings: Settings, admin: AIOKafkaAdminClient) -> None:
    """Warns, once per topic at start-up, about topics (made earlier or by others) that keep too much."""
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, _name(settings, t)) for t in TOPICS])
    except (KafkaError, ValueError, TypeError) as exc:
        log.warning("kafka: cannot read the topics' retention (%s); check that audio topics are "
                    "bounded (retention.ms=%d)", exc, settings.audio_retention_ms)
        return
    for response in responses:
        for error, _, _, name, entries in response.resources:
            if error:
                continue
            found = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
            for problem in retention_problems(name, topic_configs(settings, _logical(settings, name)), found):
                log.warning("kafka topic retention: %s; the broker's disk can fill and block every "
                            "call. Fix it on the broker (e.g. rpk topic alter-config)", problem)
