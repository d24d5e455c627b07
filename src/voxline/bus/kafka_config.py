"""What the Kafka bus asks of a broker, as plain data: topic configs, retention checks, client options.

No I/O here: `voxline.bus.kafka` does the talking. Kept apart so the rules (how long audio is
kept, what counts as an unbounded topic, how TLS and SASL are set) read on one page.
"""

from __future__ import annotations

from typing import Any

from voxline.bus.topics import Topic
from voxline.config import Settings

TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS


AUDIO_TOPICS = (Topic.AUDIO_IN, Topic.AUDIO_OUT)


def topic_configs(settings: Settings, topic: Topic) -> dict[str, str]:
    """The topic-level configs voxline creates `topic` with: delete old segments, bounded."""
    if topic in AUDIO_TOPICS:
        return {"cleanup.policy": "delete", "retention.ms": str(settings.audio_retention_ms),
                "retention.bytes": str(settings.audio_retention_bytes),
                "segment.ms": str(settings.audio_segment_ms)}
    return {"cleanup.policy": "delete", "retention.ms": str(settings.event_retention_ms),
            "segment.ms": str(settings.event_segment_ms)}


def retention_problems(name: str, wanted: dict[str, str], found: dict[str, str]) -> list[str]:
    """What is wrong with an existing topic's configs, as sentences for the operator.

    Unbounded (-1) or longer retention than configured, or no `delete` cleanup policy; a config
    the broker did not describe is taken as the broker's default and not reported.
    """
    problems = []
    policy = found.get("cleanup.policy")
    if policy is not None and "delete" not in policy:
        problems.append(f"{name}: cleanup.policy={policy} never deletes old audio or events "
                        f"(want {wanted['cleanup.policy']})")
    for key in ("retention.ms", "retention.bytes"):
        if key not in wanted or key not in found:
            continue
        have, want = int(found[key]), int(wanted[key])
        if have < 0 or have > want:
            problems.append(f"{name}: {key}={found[key]} (configured {want}): "
                            f"{'unbounded' if have < 0 else 'longer than configured'}")
    return problems


def connection_options(settings: Settings, bootstrap: str, client_id: str) -> dict[str, Any]:
    """aiokafka client options: the brokers' address, TLS and SASL from settings."""
    s = settings
    out: dict[str, Any] = {"bootstrap_servers": bootstrap, "client_id": client_id,
                           "security_protocol": s.kafka_security_protocol}
    if s.kafka_security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        out["ssl_context"] = create_ssl_context(cafile=s.kafka_ssl_cafile or None)
    if s.kafka_security_protocol.startswith("SASL"):
        out.update(sasl_mechanism=s.kafka_sasl_mechanism, sasl_plain_username=s.kafka_sasl_username,
                   sasl_plain_password=s.kafka_sasl_password)
    return out


def topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    """(topic, error code, message) from any CreateTopics response version."""
    out = []
    for entry in response.topic_errors:
        out.append((entry[0], entry[1], entry[2] if len(entry) > 2 else None))
    return out
