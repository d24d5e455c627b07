"""HTTP middleware: JSON errors (never a traceback), CORS with an allow-list, bearer auth."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from voxline.config import Settings
from voxline.http_errors import HTTP_CODES, ApiError, error_response

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

EXPOSE = "Location, X-Session-ID, X-Resume-Token, ETag, Link, Retry-After"
ALLOW_HEADERS = "Content-Type, Authorization, X-Session-ID, X-Resume-Token, If-Match"
ALLOW_METHODS = "GET, POST, DELETE, PATCH, OPTIONS"
PUBLIC_PATHS = ("/healthz", "/readyz")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.detail, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "http_error")
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, code, exc.reason or code, headers)
    except Exception:  # noqa: BLE001 - a bug must not leak a traceback to a client
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error")


def cors(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    allowed = set(settings.cors_origins)

    def origin_ok(request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if not origin:
            return None
        own = f"{request.scheme}://{request.host}"
        return origin if origin in allowed or origin == own or "*" in allowed else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = origin_ok(request)
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if origin and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
            response.headers["Vary"] = "Origin"
        return response

    return middleware


def auth(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Bearer-token auth (RFC 9725 style) on the API, when a token is configured.

    The page and its assets, health probes and CORS preflights stay open; the WebSocket may
    carry the token as `?token=` since browsers cannot set its headers.
    """
    token = settings.auth_token

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not token or request.method == "OPTIONS" or _is_public(request.path):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "unauthorized", "a valid bearer token is required",
                           {"WWW-Authenticate": 'Bearer realm="voxline"'})
        return await handler(request)

    return middleware


def _is_public(path: str) -> bool:
    if path in PUBLIC_PATHS or path == "/":
        return True
    return "/" not in path[1:] and path.rsplit(".", 1)[-1] in ("js", "css", "svg", "png", "ico", "html")
