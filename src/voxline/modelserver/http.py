"""Shared pieces of the model services' HTTP layer: app state keys and request body checks.

Errors are `voxline.http_errors.ApiError`, rendered OpenAI-shaped by the app's middleware.

Kept apart from `server.py` so the per-kind handler modules can import them without a cycle.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from voxline.config import Settings
from voxline.http_errors import ApiError
from voxline.modelserver.metrics import ServiceMetrics

# Body limits per endpoint: OpenAI accepts 25 MB audio files; chat and speech bodies are small.
MAX_AUDIO_BYTES = 25 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
MAX_SPEECH_INPUT_CHARS = 4096


@dataclass
class ServiceState:
    """What the handlers need: the model, its kind, and whether it may take requests yet."""

    kind: str
    backend: Any
    settings: Settings
    ready: bool = True
    started: float = field(default_factory=time.time)
    admitted: int = 0  # model requests being served or waiting for the model (bounded: `model_queue`)
    holds: dict[str, float] = field(default_factory=dict)  # llm: agents' first-audio holds, since when
    metrics: ServiceMetrics = field(init=False)  # its own registry, read by /metrics

    def __post_init__(self) -> None:
        self.metrics = ServiceMetrics(self.kind, in_flight=lambda: self.admitted, ready=lambda: float(self.ready))


STATE: web.AppKey[ServiceState] = web.AppKey("voxline_service_state", ServiceState)

def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or an ApiError with the precise reason (415/413/400)."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"expected Content-Type application/json, got {request.content_type or 'none'}")
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ApiError(413, "request_too_large", f"request body over {MAX_JSON_BYTES} bytes")
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.read(64 * 1024):  # read(n) may return less than n
        total += len(chunk)
        if total > MAX_JSON_BYTES:  # chunked bodies carry no Content-Length to check up front
            raise ApiError(413, "request_too_large", f"request body over {MAX_JSON_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return body


def number(body: dict[str, Any], key: str, lo: float, hi: float, default: float | None = None,
           integer: bool = False) -> Any:
    """A numeric field checked for type and range (bools are not numbers here)."""
    value = body.get(key)
    if value is None:
        return default
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise ApiError(400, "invalid_value", f"'{key}' must be {kind} between {lo:g} and {hi:g}", param=key)
    return value


def string(body: dict[str, Any], key: str, default: str | None = None, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ApiError(400, "missing_field", f"missing required field '{key}'", param=key)
        return default
    if not isinstance(value, str):
        raise ApiError(400, "invalid_type", f"'{key}' must be a string", param=key)
    return value
