"""Settings of the bus between media servers and agents: memory or Kafka, topics and retention."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from voxline.config.types import HostPorts, NonNegative, Positive


class BusSettings(BaseModel):
    """The bus: memory (one process) or Kafka, its connection, topics and their retention."""

    bus: Literal["memory", "kafka"] = "memory"
    kafka_bootstrap: HostPorts = "127.0.0.1:9092"
    topic_prefix: str = "voxline."
    topic_partitions: Positive = 4
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-256"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""  # a secret: VOXLINE_KAFKA_SASL_PASSWORD or a file in the secrets directory
    kafka_ssl_cafile: str = ""  # CA bundle for SSL/SASL_SSL; empty = the system's
    topic_replication: NonNegative = 0  # replication factor of created topics; 0 = min(3, brokers in the cluster)
    # Audio topics carry ~32 KB/s per listening call: keep minutes, never an ever-growing log.
    audio_retention_ms: Positive = 600_000  # audio.in / audio.out: 10 minutes
    audio_retention_bytes: Positive = 268_435_456  # per partition of each audio topic (256 MiB), whichever comes first
    audio_segment_ms: Positive = 60_000  # segments roll each minute, so retention can delete them
    event_retention_ms: Positive = 86_400_000  # events, control, logs, metrics: a day
    event_segment_ms: Positive = 3_600_000
    agent_group: str = "voxline-agents"
