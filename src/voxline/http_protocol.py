"""aiohttp's own protocol errors as voxline's JSON errors: the one patch of aiohttp.

Why: a request that aiohttp's parser rejects (request line or header too long, bad method,
bad header, bad chunked body) never reaches an app or its error middleware. aiohttp answers
it from `RequestHandler.handle_error` in plain text and logs an ERROR with a traceback, and
it has no supported hook for either (3.14: no handler class can be given to `AppRunner`).
So `install()` wraps two `RequestHandler` methods:
- `handle_error` answers `{"error": code, "detail": ...}` (`http_errors.error_response`;
  OpenAI's shape on the model servers) with the status aiohttp chose, and logs a parser rejection as one INFO line (a client's
  fault, not ours); a 500 (a bug outside every middleware) keeps aiohttp's ERROR log;
- `data_received` fails the body of a request already being handled when the parser rejects
  what follows its headers (a bad chunk size sent after them): aiohttp's C parser drops that
  body without failing it, so the handler waited for it until the client went away. The
  body's reader now raises `web.RequestPayloadError`, which the error middlewares answer 400.
  (The C parser is what aiohttp's wheels use; its pure-Python fallback, `AIOHTTP_NO_EXTENSIONS`,
  fails such a body itself but waits on a line without CRLF, and is not what voxline runs.)
Remove when aiohttp offers a hook for protocol errors and fails an in-flight body on a
parse error (check at each aiohttp upgrade: `tests/integration/test_protocol_errors.py`
sends each kind over a raw socket and fails if the answer or the log is wrong).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import http_exceptions, web, web_protocol

from voxline.http_errors import error_response, openai_error_response

log = logging.getLogger("voxline.http")

_PATCHED = "_voxline_patched"
# Set on an app whose errors are OpenAI-shaped (the `voxline serve` model servers).
OPENAI_ERRORS: web.AppKey[bool] = web.AppKey("voxline_openai_errors", bool)


def rejection(exc: BaseException | None) -> tuple[str, str]:
    """(code, detail) for a request aiohttp's parser rejected."""
    if isinstance(exc, http_exceptions.LineTooLong):
        return "line_too_long", f"the request line or a header is longer than {exc.args[1]} bytes"
    if isinstance(exc, http_exceptions.BadHttpMethod):
        return "bad_method", exc.message.splitlines()[0].rstrip(":") if exc.message else "bad HTTP method"
    if isinstance(exc, http_exceptions.BadStatusLine):
        return "bad_request_line", "the request line is not HTTP/1.x"
    if isinstance(exc, http_exceptions.InvalidHeader):
        return "bad_header", "a header is malformed"
    if isinstance(exc, http_exceptions.TransferEncodingError | http_exceptions.ContentLengthError):
        return "bad_body", "the body does not match its framing"
    message = exc.message if isinstance(exc, http_exceptions.HttpProcessingError) else ""
    first = (message.splitlines() or ["malformed request"])[0].rstrip(":").strip()
    lower = first.lower()
    if "chunk" in lower or "content-length" in lower or "transfer-encoding" in lower:
        return "bad_body", first[:200]
    if "header" in lower:
        return "bad_header", first[:200]
    return "bad_request", first[:200]


def _handle_error(self: web_protocol.RequestHandler, request: Any, status: int = 500,
                  exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
    if status >= 500:
        _original_handle_error(self, request, status, exc, message)  # its ERROR log and checks
        code, detail = ("timeout", "the request took too long") if status == 504 else (
            "internal", "internal server error")
    else:
        if request.writer.output_size > 0:  # as aiohttp: a response was already started
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        code, detail = rejection(exc)
        log.info("rejected a malformed request", extra={"remote": request.remote, "status": status,
                                                         "error": code, "detail": detail})
    app = getattr(self._request_handler, "__self__", None)  # the Application this port serves
    openai = isinstance(app, web.Application) and app.get(OPENAI_ERRORS, False)
    response = openai_error_response(status, code, detail) if openai else error_response(status, code, detail)
    response.force_close()
    return response


def _data_received(self: web_protocol.RequestHandler, data: bytes) -> None:
    _original_data_received(self, data)
    request = self._current_request
    if request is None or request.content.is_eof() or not self._messages:
        return
    info = self._messages[-1][0]
    if isinstance(info, web_protocol._ErrInfo):
        code, detail = rejection(info.exc)
        request.content.set_exception(web.RequestPayloadError(f"{code}: {detail}"))
        request.content.feed_eof()  # so aiohttp does not linger over it after the answer


_original_handle_error = web_protocol.RequestHandler.handle_error
_original_data_received = web_protocol.RequestHandler.data_received


def install() -> None:
    """Patch aiohttp's request handler (idempotent; every voxline HTTP app calls it)."""
    if getattr(web_protocol.RequestHandler, _PATCHED, False):
        return
    web_protocol.RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]
    web_protocol.RequestHandler.data_received = _data_received  # type: ignore[method-assign]
    setattr(web_protocol.RequestHandler, _PATCHED, True)


def bad_body(exc: web.RequestPayloadError) -> tuple[str, str]:
    """(code, detail) of a body the parser rejected, for the error middlewares."""
    code, _, detail = str(exc).partition(": ")
    return (code, detail) if detail else ("bad_body", str(exc) or "the body could not be read")
