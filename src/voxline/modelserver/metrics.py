"""Prometheus metrics of one model service: requests by route and status, time, the queue, readiness.

One registry per service app (`voxline.prometheus`): tests serve several models in one process.
Route labels are bounded by the caller (`modelserver.app` maps unknown paths to "other").
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from voxline.prometheus import new_registry

DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self, kind: str, in_flight: Callable[[], float], ready: Callable[[], float]) -> None:
        self.kind = kind
        self.registry = r = new_registry()
        self._requests = Counter("voxline_model_requests_total", "Requests to this model service, by route and status.",
                                 ["kind", "route", "status"], registry=r)
        self._seconds = Counter("voxline_model_request_seconds_total", "Time spent answering, by route.",
                                ["kind", "route"], registry=r)
        self._duration = Histogram("voxline_model_request_duration_seconds", "How long each request took, by route.",
                                   ["kind", "route"], buckets=DURATION_BUCKETS, registry=r)
        Gauge("voxline_model_in_flight", "Model requests being served or waiting (bounded by model_queue).",
              ["kind"], registry=r).labels(kind=kind).set_function(in_flight)
        self.rejected = Counter("voxline_model_rejected_total", "Requests answered 429 because the queue was full.",
                                ["kind"], registry=r).labels(kind=kind)
        Gauge("voxline_model_ready", "1 when the model is warmed and takes requests.", ["kind"],
              registry=r).labels(kind=kind).set_function(ready)

    def request(self, route: str, status: int, seconds: float) -> None:
        """One answered request (any status) that took `seconds`."""
        self._requests.labels(kind=self.kind, route=route, status=str(status)).inc()
        self._seconds.labels(kind=self.kind, route=route).inc(seconds)
        self._duration.labels(kind=self.kind, route=route).observe(seconds)
