"""One error type for every HTTP API of voxline, and its two JSON bodies.

Handlers raise `ApiError(status, code, detail)`; each app's error middleware turns it into
JSON with that status, never a traceback:
- the media server and agent APIs: `{"error": code, "detail": text}` (`error_response`);
- the OpenAI-compatible model servers (`voxline serve`): OpenAI's own shape,
  `{"error": {"message", "type", "param", "code"}}` (`openai_error_response`), because
  OpenAI clients parse that one; `param` names the request field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None,
                 param: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.param = param


# aiohttp's own HTTP exceptions mapped to stable error codes.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    """The body of every error of the media server and agent APIs (`#/components/schemas/Error`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    error: str = Field(description="Stable machine-readable code.")
    detail: str = Field(description="Human-readable reason.")


def error_response(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=ErrorBody(error=code, detail=detail).model_dump_json(),
                        content_type="application/json", headers=headers)


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    500: "server_error",
    503: "service_unavailable",
}


def openai_error_body(status: int, code: str | None, detail: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": detail, "type": _OPENAI_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def openai_error_response(status: int, code: str | None, detail: str, param: str | None = None,
                          headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(openai_error_body(status, code, detail, param), status=status, headers=headers)
