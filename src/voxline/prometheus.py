"""Prometheus exposition through `prometheus-client`, one registry per server.

Every server (media, agent, each model service) makes its own `CollectorRegistry`, never the
process-global default: tests run several servers in one process, and each must count only
its own. A registry also carries the process metrics (`process_cpu_seconds_total`,
`process_resident_memory_bytes`, ...), read from /proc at scrape time only.

Several server processes (`voxline bench --server-procs N`, or pods) are separate scrape
targets, one port each: Prometheus sums them (`sum(...)`), so no multiprocess directory is
needed and a scrape never reads another process's files.

`_created` series are off: no alert or dashboard uses them, and they double every counter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from voxline.bus.messages import DROPPED

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in 0.26

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_LABEL = 80  # label values that come from messages are cut here: bounded series size


def new_registry() -> CollectorRegistry:
    """A registry of this server's own, with the process metrics in it."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    return registry


def label(value: str) -> str:
    """A label value taken from a message: one line, at most MAX_LABEL characters."""
    return value.replace("\n", " ")[:MAX_LABEL]


def response(registry: CollectorRegistry) -> web.Response:
    """The registry in the text format (0.0.4), as an aiohttp response."""
    return text_response(prometheus_client.generate_latest(registry))


def text_response(body: bytes) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


class BusDrops(Collector):
    """Bus messages dropped on decode (`voxline.bus.messages.DROPPED`), counted where they are dropped."""

    def __init__(self, drops: Mapping[tuple[str, str], int] = DROPPED) -> None:
        self.drops = drops

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily("voxline_bus_messages_dropped_total",
                                     "Bus messages dropped on decode (malformed, unknown type or version, bad fields).",
                                     labels=["topic", "reason"])
        for (topic, reason), n in sorted(self.drops.items()):
            family.add_metric([topic, reason], n)
        yield family
