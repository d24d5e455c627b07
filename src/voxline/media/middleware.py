"""HTTP middleware: JSON errors (never a traceback), CORS with an allow-list, a Host
allow-list (DNS rebinding), browser security headers, bearer auth."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from voxline import http_protocol
from voxline.config import Settings
from voxline.http_errors import HTTP_CODES, ApiError, error_response
from voxline.media.access import OPERATOR

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

EXPOSE = "Location, X-Session-ID, X-Resume-Token, X-Session-Token, ETag, Link, Retry-After"
ALLOW_HEADERS = "Content-Type, Authorization, X-Session-ID, X-Resume-Token, X-Session-Token, If-Match"
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
    except web.RequestPayloadError as exc:  # a body the parser rejected (voxline.http_protocol)
        response = error_response(400, *http_protocol.bad_body(exc))
        response.force_close()
        return response
    except ConnectionError:
        raise  # the client went away mid-request: aiohttp notes it, no traceback
    except Exception:  # noqa: BLE001 - a bug must not leak a traceback to a client
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error")


def allowed_origin(request: web.Request, settings: Settings) -> str | None:
    """The request's Origin if it may call this server (the CORS allow-list or our own origin)."""
    origin = request.headers.get("Origin")
    if not origin:
        return None
    allowed = settings.cors_origins
    own = f"{request.scheme}://{request.host}"
    return origin if origin in allowed or origin == own or "*" in allowed else None


def cors(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = allowed_origin(request, settings)
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


def hosts(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Only Host names this server is known by (`421` otherwise), so DNS rebinding cannot
    turn a foreign site's name into a same-origin window onto the API.

    Allowed: an IP literal (rebinding needs a name), `localhost`, the listen address, the host
    of `public_url`, and `allowed_hosts` (`*` turns the check off). Health probes are exempt.
    """
    names = {"localhost", settings.host.lower(), *(h.lower() for h in settings.allowed_hosts)}
    if settings.public_url:
        names.add((urlsplit(settings.public_url).hostname or "").lower())

    def host_ok(host: str) -> bool:
        name = _host_name(host)
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in names or name.endswith(".localhost") or "*" in names

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in PUBLIC_PATHS and not host_ok(request.headers.get("Host", "")):
            raise ApiError(421, "misdirected_request",
                           "this server does not answer to that Host name (add it to VOXLINE_ALLOWED_HOSTS)")
        return await handler(request)

    return middleware


def security_headers(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    """CSP, nosniff, no framing, no referrer on every response (the page's above all).

    `connect-src` lists the servers the page may talk to: its own origin and `page_servers`,
    so a page opened with `?server=` elsewhere cannot be pointed at a server nobody allowed.
    """
    servers = " ".join(sorted({*settings.page_servers, *(_ws(o) for o in settings.page_servers)}))
    ancestors = settings.frame_ancestors or "'none'"
    csp = (f"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
           f"connect-src 'self' {servers}".rstrip() + f"; object-src 'none'; base-uri 'none'; form-action 'none'; "
           f"frame-ancestors {ancestors}")
    fixed = {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
    if ancestors == "'none'":
        fixed["X-Frame-Options"] = "DENY"

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if not response.prepared:
            response.headers.update(fixed)
        return response

    return middleware


def _host_name(host: str) -> str:
    """`Host` without its port, lower case: `[::1]:8001` -> `::1`, `Example.com.:80` -> `example.com`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _ws(origin: str) -> str:
    return origin.replace("https://", "wss://", 1).replace("http://", "ws://", 1)


def auth(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Bearer-token auth (RFC 9725 style) on the API, when a token is configured.

    `auth_token` is the callers' credential; `admin_token` the operator's: it opens every
    route, and once set, `GET /sessions` (every session, transcripts included) and `/metrics`
    need it (or `metrics_token` for `/metrics`). The page and its assets, health probes and
    CORS preflights stay open. Only the events WebSocket may carry the token as `?token=`
    (browsers cannot set its headers); anywhere else a query token would end up in logs.

    A session's own routes are not opened by `auth_token`: their handlers need that session's
    secret or the operator (`voxline.media.access`); here they only learn who the operator is.
    """
    token = settings.auth_token
    admin = settings.admin_token
    metrics_token = settings.metrics_token  # opens /metrics alone: what a Prometheus scrape job holds

    def refused() -> ApiError:
        return ApiError(401, "unauthorized", "a valid bearer token is required",
                        {"WWW-Authenticate": 'Bearer realm="voxline"'})

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (token or admin) or request.method == "OPTIONS" or _is_public(request.path):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:]
        else:
            given = request.query.get("token", "") if _is_events_socket(request.path) else ""
        if admin and _same(given, admin):
            request[OPERATOR] = True
            return await handler(request)  # the operator
        if _is_session_route(request.method, request.path):
            return await handler(request)  # the session's secret decides, in the handler
        if metrics_token and request.path == "/metrics" and _same(given, metrics_token):
            return await handler(request)
        if admin and request.path in OPERATOR_PATHS:
            raise refused()
        if token and not _same(given, token):
            raise refused()
        return await handler(request)

    return middleware


OPERATOR_PATHS = ("/sessions", "/metrics")


def _same(given: str, secret: str) -> bool:
    return hmac.compare_digest(given.encode(), secret.encode())


def _is_session_route(method: str, path: str) -> bool:
    """`DELETE /whip/{id}`, `GET /sessions/{id}[/events]`, `POST /listening/*`: one session's routes."""
    prefix = {"DELETE": "/whip/", "GET": "/sessions/", "POST": "/listening/"}.get(method)
    return prefix is not None and path.startswith(prefix)


def _is_events_socket(path: str) -> bool:
    return path.startswith("/sessions/") and path.endswith("/events")


def _is_public(path: str) -> bool:
    if path in PUBLIC_PATHS or path == "/":
        return True
    return "/" not in path[1:] and path.rsplit(".", 1)[-1] in ("js", "css", "svg", "png", "ico", "html")
