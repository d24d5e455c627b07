"""Prometheus metrics of one media server, and optional OpenTelemetry spans per turn.

`MediaMetrics` holds a registry of its own (`voxline.prometheus`), so tests can run several
servers in one process. Everything is fed from what the media server already sees: session
lifecycle calls and the events the agent publishes (`turn.metrics`, `interruption`, `error`),
so the agent needs no changes. Counting is a lock and an add (prometheus-client); the text is
made only when /metrics is scraped.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voxline.bus.messages import ErrorEvent, Event, Interruption, TurnMetrics
from voxline.prometheus import BusDrops, label, new_registry

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


def stage_of(key: str) -> str | None:
    """`stt_ms` -> `stt`: every numeric `*_ms` field of turn.metrics is a stage."""
    return key[:-3] if key.endswith("_ms") else None


MEDIA_COUNTERS = {  # `MediaPeer.counts` key -> (metric, help)
    "frames_late": ("voxline_playout_frames_late_total", "Agent audio frames sent more than 20 ms after due."),
    "audio_dropped": ("voxline_inbound_audio_dropped_total", "Caller audio chunks dropped: the bus fell 5 s behind."),
    "rtp_concealed": ("voxline_inbound_rtp_concealed_total",
                      "Caller audio frames made up by the decoder for lost packets (gaps up to 100 ms)."),
    "rtp_late": ("voxline_inbound_rtp_late_total", "Caller RTP packets dropped: duplicates, or older than one taken."),
    "rtp_errors": ("voxline_inbound_rtp_errors_total", "Caller RTP packets that failed SRTP or could not be read."),
    "rtp_limited": ("voxline_inbound_rtp_limited_total",
                    "Caller datagrams or decoded frames dropped: over the packet, byte, pre-DTLS or real-time budget."),
    "rtp_ssrc_dropped": ("voxline_inbound_rtp_ssrc_dropped_total", "Caller RTP packets of a second inbound stream."),
    "rtp_empty": ("voxline_inbound_rtp_empty_total", "Caller RTP packets with no payload."),
    "candidates_refused": ("voxline_ice_candidates_refused_total",
                           "Offered ICE candidates not checked: a refused address, or over the cap."),
}


class _Live(Collector):
    """What is known only at scrape time (live sessions, every call's media counts), set by `render`."""

    def __init__(self) -> None:
        self.active = 0
        self.disconnected = 0
        self.media: Mapping[str, int] = {}
        self.paths: Mapping[tuple[str, str], int] = {}

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("voxline_sessions_active", "Sessions with a live or resumable peer.",
                                value=self.active)
        yield GaugeMetricFamily("voxline_sessions_disconnected", "Sessions whose caller dropped and may resume.",
                                value=self.disconnected)
        paths = GaugeMetricFamily("voxline_peer_paths", "Live calls by the path their audio takes: direct "
                                  "(voxline.rtc), inline (decoded in the loop), aiortc (its own, slower path: a "
                                  "fast path did not install).", labels=["direction", "path"])
        for direction, kinds in (("receive", ("direct", "inline", "aiortc")), ("send", ("direct", "aiortc"))):
            for kind in kinds:
                paths.add_metric([direction, kind], self.paths.get((direction, kind), 0))
        yield paths
        for key, (name, text) in MEDIA_COUNTERS.items():
            yield CounterMetricFamily(name, text, value=self.media.get(key, 0))


class MediaMetrics:
    def __init__(self) -> None:
        self.registry = r = new_registry()
        self.created = PromCounter("voxline_sessions_created_total", "Sessions created.", registry=r)
        self.resumed = PromCounter("voxline_sessions_resumed_total", "Sessions resumed by a caller that came back.",
                                   registry=r)
        self.ended = PromCounter("voxline_sessions_ended_total", "Sessions ended, by reason.", ["reason"], registry=r)
        self.turns = PromCounter("voxline_turns_total", "Turns the agent answered (turn.metrics relayed).", registry=r)
        self.interruptions = PromCounter("voxline_interruptions_total", "Replies the caller interrupted.", registry=r)
        self.errors = PromCounter("voxline_errors_total", "Errors the agent reported, by stage.", ["stage"], registry=r)
        self.stage = Histogram("voxline_stage_latency_seconds", "Per-turn stage latencies reported by the agent "
                               "(stage server_voice_to_voice: end of the caller's speech to the first reply audio "
                               "sent).", ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.bus_lag = Histogram("voxline_bus_lag_seconds", "Time from an agent event's ts to its relay here.",
                                 buckets=LAG_BUCKETS, registry=r)
        self.store_errors = PromCounter("voxline_session_store_errors_total",
                                        "Session store writes or reads that failed (the call went on).", registry=r)
        self.disconnected = 0  # callers that dropped (the gauge is the live count: `render`)
        self.retired: Counter[str] = Counter()  # media counts of calls already closed (`MediaPeer.counts`)
        self._live = _Live()
        r.register(self._live)
        r.register(BusDrops())

    def session_ended(self, reason: str) -> None:
        self.ended.labels(reason=label(reason)).inc()

    def on_event(self, ev: Event, now: float | None = None) -> None:
        """Count one relayed agent event; bus lag is now minus the event's own `ts`."""
        now = time.time() if now is None else now
        if math.isfinite(ev.ts):
            self.bus_lag.observe(max(0.0, now - ev.ts))
        if isinstance(ev, TurnMetrics):
            self.turns.inc()
            for key, value in ev.metrics.items():
                stage = stage_of(key)
                if stage and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.stage.labels(stage=label(stage)).observe(value / 1000)
        elif isinstance(ev, Interruption):
            self.interruptions.inc()
        elif isinstance(ev, ErrorEvent):
            self.errors.labels(stage=label(ev.stage or "unknown")).inc()

    def render(self, active: int, disconnected: int, media: Mapping[str, int] | None = None,
               paths: Mapping[tuple[str, str], int] | None = None) -> bytes:
        """The text exposition; `media` is every call's `MediaPeer.counts`, summed; `paths` counts
        live calls by (direction, path) from `MediaPeer.paths`."""
        live = self._live
        live.active, live.disconnected, live.media, live.paths = active, disconnected, media or {}, paths or {}
        return generate_latest(self.registry)


class TurnTracer:
    """One OpenTelemetry span per turn with a child span per stage, built from turn.metrics.

    The stages are back-dated from the event's timestamp (the moment the first audio was
    sent): a timeline that is right in shape and length, made on the media server, so the
    agent needs no tracing of its own. Inactive unless the SDK is importable and tracing is
    asked for (`VOXLINE_OTEL=1` or `OTEL_EXPORTER_OTLP_ENDPOINT`).
    """

    # Stage order within a turn, and which stage each one starts after.
    ORDER = ("end_of_turn", "stt", "llm_first_token", "tts_first_audio")

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    @classmethod
    def from_settings(cls, enabled: bool, provider: Any = None) -> TurnTracer | None:
        if not (enabled or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or provider is not None):
            return None
        try:
            from opentelemetry import trace
        except ImportError:
            log.warning("OpenTelemetry asked for but opentelemetry-sdk is not installed: no spans")
            return None
        if provider is None:
            provider = cls._otlp_provider() or trace.get_tracer_provider()
        return cls(provider.get_tracer("voxline.media"))

    @staticmethod
    def _otlp_provider() -> Any:
        if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed")
            return None
        provider = TracerProvider(resource=Resource.create({"service.name": "voxline-media"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return provider

    def on_turn(self, obj: dict[str, Any]) -> None:
        metrics = obj.get("metrics") or {}
        end = float(obj.get("ts") or time.time())
        total_ms = metrics.get("server_voice_to_voice_ms")
        stages = {s: metrics.get(f"{s}_ms") for s in self.ORDER}
        known = [v for v in stages.values() if isinstance(v, (int, float))]
        span_ms = total_ms if isinstance(total_ms, (int, float)) else sum(known)
        start = end - span_ms / 1000
        attrs = {"voxline.session_id": str(obj.get("session_id")), "voxline.turn": int(obj.get("turn") or 0),
                 "voxline.speculative": bool(metrics.get("speculative"))}
        ns = 1_000_000_000
        turn = self.tracer.start_span("turn", start_time=int(start * ns), attributes=attrs)
        from opentelemetry import trace

        ctx = trace.set_span_in_context(turn)
        cursor = start
        for stage, ms in stages.items():
            if not isinstance(ms, (int, float)):
                continue
            child = self.tracer.start_span(stage, context=ctx, start_time=int(cursor * ns), attributes=attrs)
            cursor = min(end, cursor + ms / 1000)
            child.end(end_time=int(cursor * ns))
        turn.end(end_time=int(end * ns))
