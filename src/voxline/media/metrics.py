"""Prometheus metrics of one media server, and optional OpenTelemetry spans per turn.

Hand-written text exposition (format 0.0.4) with one `MediaMetrics` per MediaServer instead
of a process-global registry, so tests can run several servers in one process. Everything
is fed from what the media server already sees: session lifecycle calls and the events the
agent publishes (`turn.metrics`, `interruption`, `error`), so the agent needs no changes.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from voxline.bus.messages import ErrorEvent, Event, Interruption, TurnMetrics, dropped_metric

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


def stage_of(key: str) -> str | None:
    """`stt_ms` -> `stt`: every numeric `*_ms` field of turn.metrics is a stage."""
    return key[:-3] if key.endswith("_ms") else None


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")[:80]


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


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> Iterable[str]:
        sep = "," if labels else ""
        running = 0
        for bound, n in zip(self.buckets, self.counts):
            running += n
            yield f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}'
        yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}'
        suffix = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{suffix} {round(self.sum, 6)}"
        yield f"{name}_count{suffix} {self.count}"


class MediaMetrics:
    def __init__(self) -> None:
        self.created = 0
        self.resumed = 0
        self.disconnected = 0
        self.ended: Counter[str] = Counter()
        self.turns = 0
        self.interruptions = 0
        self.errors: Counter[str] = Counter()
        self.stage: dict[str, Histogram] = {}
        self.bus_lag = Histogram(LAG_BUCKETS)
        self.store_errors = 0
        self.retired: Counter[str] = Counter()  # media counts of calls already closed (`MediaPeer.counts`)

    def on_event(self, ev: Event, now: float | None = None) -> None:
        """Count one relayed agent event; bus lag is now minus the event's own `ts`."""
        now = time.time() if now is None else now
        if math.isfinite(ev.ts):
            self.bus_lag.observe(max(0.0, now - ev.ts))
        if isinstance(ev, TurnMetrics):
            self.turns += 1
            for key, value in ev.metrics.items():
                stage = stage_of(key)
                if stage and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.stage.setdefault(stage, Histogram(LATENCY_BUCKETS)).observe(value / 1000)
        elif isinstance(ev, Interruption):
            self.interruptions += 1
        elif isinstance(ev, ErrorEvent):
            self.errors[ev.stage or "unknown"] += 1

    def render(self, active: int, disconnected: int, media: Mapping[str, int] | None = None,
               paths: Mapping[tuple[str, str], int] | None = None) -> str:
        """The text exposition; `media` is every call's `MediaPeer.counts`, summed; `paths` counts
        live calls by (direction, path) from `MediaPeer.paths`."""
        media = media or {}
        paths = paths or {}
        out = [
            "# HELP voxline_sessions_active Sessions with a live or resumable peer.",
            "# TYPE voxline_sessions_active gauge",
            f"voxline_sessions_active {active}",
            "# HELP voxline_sessions_disconnected Sessions whose caller dropped and may resume.",
            "# TYPE voxline_sessions_disconnected gauge",
            f"voxline_sessions_disconnected {disconnected}",
            "# TYPE voxline_sessions_created_total counter",
            f"voxline_sessions_created_total {self.created}",
            "# TYPE voxline_sessions_resumed_total counter",
            f"voxline_sessions_resumed_total {self.resumed}",
            "# TYPE voxline_sessions_ended_total counter",
            *(f'voxline_sessions_ended_total{{reason="{_label(r)}"}} {n}' for r, n in sorted(self.ended.items())),
            "# TYPE voxline_turns_total counter",
            f"voxline_turns_total {self.turns}",
            "# TYPE voxline_interruptions_total counter",
            f"voxline_interruptions_total {self.interruptions}",
            "# TYPE voxline_errors_total counter",
            *(f'voxline_errors_total{{stage="{_label(s)}"}} {n}' for s, n in sorted(self.errors.items())),
            "# HELP voxline_stage_latency_seconds Per-turn stage latencies reported by the agent.",
            "# TYPE voxline_stage_latency_seconds histogram",
        ]
        for stage, hist in sorted(self.stage.items()):
            out.extend(hist.lines("voxline_stage_latency_seconds", f'stage="{_label(stage)}"'))
        out += ["# HELP voxline_bus_lag_seconds Time from an agent event's ts to its relay here.",
                "# TYPE voxline_bus_lag_seconds histogram",
                *self.bus_lag.lines("voxline_bus_lag_seconds"),
                *dropped_metric(),
                "# TYPE voxline_session_store_errors_total counter",
                f"voxline_session_store_errors_total {self.store_errors}",
                ]
        out += ["# HELP voxline_peer_paths Live calls by the path their audio takes: direct (voxline.rtc), "
                "inline (decoded in the loop), aiortc (its own, slower path: a fast path did not install).",
                "# TYPE voxline_peer_paths gauge"]
        for direction, kinds in (("receive", ("direct", "inline", "aiortc")), ("send", ("direct", "aiortc"))):
            out += [f'voxline_peer_paths{{direction="{direction}",path="{k}"}} {paths.get((direction, k), 0)}'
                    for k in kinds]
        for key, (name, text) in MEDIA_COUNTERS.items():
            out += [f"# HELP {name} {text}", f"# TYPE {name} counter", f"{name} {media.get(key, 0)}"]
        return "\n".join(out) + "\n"


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
