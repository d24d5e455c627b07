"""JSON errors: every failure is `{"error": code, "detail": text}` with the right status."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def error_response(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": code, "detail": detail}),
                        content_type="application/json", headers=headers)


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
