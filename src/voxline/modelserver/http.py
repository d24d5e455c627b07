"""Shared pieces of the model services' HTTP layer: app state keys and OpenAI-shaped errors.

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


STATE: web.AppKey[ServiceState] = web.AppKey("voxline_service_state", ServiceState)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    500: "server_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """Raised by handlers; the error middleware turns it into an OpenAI-shaped JSON reply."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(status, message, code, param), status=status, headers=headers)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or an ApiError with the precise reason (415/413/400)."""
    if request.content_type != "application/json":
        raise ApiError(415, f"expected Content-Type application/json, got {request.content_type or 'none'}",
                       "unsupported_media_type")
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ApiError(413, f"request body over {MAX_JSON_BYTES} bytes", "request_too_large")
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.read(64 * 1024):  # read(n) may return less than n
        total += len(chunk)
        if total > MAX_JSON_BYTES:  # chunked bodies carry no Content-Length to check up front
            raise ApiError(413, f"request body over {MAX_JSON_BYTES} bytes", "request_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", "invalid_json")
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
        raise ApiError(400, f"'{key}' must be {kind} between {lo:g} and {hi:g}", "invalid_value", key)
    return value


def string(body: dict[str, Any], key: str, default: str | None = None, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ApiError(400, f"missing required field '{key}'", "missing_field", key)
        return default
    if not isinstance(value, str):
        raise ApiError(400, f"'{key}' must be a string", "invalid_type", key)
    return value
