"""Prometheus text read back the way Prometheus reads it (prometheus-client's parser), for tests.

`parse_metrics(text)['name{a="x",b="y"}']` is the sample's value as a float, labels sorted by
name (prometheus-client writes a histogram's `le` first): tests compare numbers, never the
text (`1` and `1.0` are the same sample).
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample_key(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def parse_metrics(text: str) -> dict[str, float]:
    """Every sample, keyed `name{labels sorted by name}`."""
    return {sample_key(s.name, s.labels): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
