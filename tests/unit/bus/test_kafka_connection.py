"""How the Kafka bus reaches its brokers: plaintext by default, TLS and SASL from settings."""

from __future__ import annotations

import ssl

from voxline.bus.kafka import KafkaBus
from voxline.config import Settings


def test_plaintext_by_default() -> None:
    conn = KafkaBus(Settings(kafka_bootstrap="k1:9092,k2:9092")).connection()
    assert conn["bootstrap_servers"] == "k1:9092,k2:9092" and conn["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in conn and "sasl_mechanism" not in conn


def test_sasl_over_tls_passes_credentials_and_a_verifying_context() -> None:
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                        kafka_sasl_username="voxline", kafka_sasl_password="pw")
    conn = KafkaBus(settings).connection()
    assert conn["security_protocol"] == "SASL_SSL" and conn["sasl_mechanism"] == "SCRAM-SHA-512"
    assert conn["sasl_plain_username"] == "voxline" and conn["sasl_plain_password"] == "pw"
    context = conn["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert "pw" not in str(settings.redacted())  # the password never reaches a start-up log


def test_sasl_without_tls_has_no_ssl_context() -> None:
    conn = KafkaBus(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
                             kafka_sasl_password="p", kafka_sasl_mechanism="PLAIN")).connection()
    assert "ssl_context" not in conn and conn["sasl_mechanism"] == "PLAIN"
