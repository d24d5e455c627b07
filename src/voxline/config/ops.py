"""Settings of operations: logs, the data directory, the session store, resume and drain, tracing."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from voxline.config.types import Directory, Flag, LogLevel, OptionalRedisUrl


class OpsSettings(BaseModel):
    """Logs, data directory, session store, resume after a drop, graceful drain, tracing."""

    log_level: LogLevel = "INFO"
    log_format: Literal["json", "text", "auto"] = "auto"  # auto: text on a terminal, JSON otherwise
    data_dir: Directory = "./data"
    session_store: Literal["sqlite", "redis", "memory"] = "sqlite"  # sqlite: a file in data_dir; redis: redis_url
    redis_url: OptionalRedisUrl = ""  # e.g. redis://127.0.0.1:6379/0, for session_store=redis
    resume_grace_s: Annotated[float, Field(ge=0)] = 60.0  # a dropped caller may resume its session this long
    # redis: an ended session's record expires this long after its end (0: kept); bounds Redis memory
    session_record_ttl_s: Annotated[float, Field(ge=0)] = 7 * 86400.0
    drain_timeout_s: Annotated[float, Field(ge=0)] = 25.0  # on SIGTERM, live calls go on this long, then resume elsewhere
    node_id: str = ""  # this media server's name in a shared store; empty = hostname:port
    otel: Flag = False  # OpenTelemetry spans per turn (needs opentelemetry-sdk; also OTEL_EXPORTER_OTLP_ENDPOINT)
