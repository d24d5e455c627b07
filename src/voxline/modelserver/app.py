"""The model services: one embedded back-end served as its OpenAI-compatible HTTP API.

`voxline serve stt|llm|tts` runs one of these; the agent (or anything else) reaches it through
the remote back-ends in `services/*/openai.py`, or any vendor speaking the same API.

Endpoints (exact shapes in docs/services.md):

- `POST /v1/audio/transcriptions` (stt): multipart/form-data, `file` = PCM WAV (any rate,
  channels, 8/16/24/32-bit), optional `model`, `language` (the service's own), `response_format`
  json (default, `{"text"}`) | text | verbose_json (`{"task","language","duration","text","segments"}`).
- `POST /v1/chat/completions` (llm): JSON `messages`, optional `stream`, `max_tokens` /
  `max_completion_tokens`, `temperature`, `model`, `stream_options.include_usage`. Streams
  `text/event-stream` chunks and `data: [DONE]`; a client that goes away stops generation.
- `POST /v1/audio/speech` (tts): JSON `input`, optional `voice`, `model`, `speed`,
  `response_format` pcm (s16le mono 24 kHz, chunked per sentence) | wav (default).
  Header `X-Sample-Rate: 24000`.
- `POST /v1/voxline/hold` (llm, voxline's own): JSON `holder`, `hold`; 204. An agent's reply is
  making its first audio on these cores: the rest of the replies waits (`modelserver.llm.hold`).
- `GET /v1/models`, `GET /healthz` (model loaded), `GET /readyz` (warmed and not draining).

Every error is OpenAI-shaped JSON `{"error": {"message", "type", "param", "code"}}`. When
`settings.api_key` is set, `/v1/*` needs `Authorization: Bearer <api_key>`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from voxline import http_protocol, prometheus
from voxline.config import Settings
from voxline.http_errors import ApiError, openai_error_response
from voxline.modelserver import llm as server_llm
from voxline.modelserver import stt as server_stt
from voxline.modelserver import tts as server_tts
from voxline.modelserver.http import STATE, ServiceState, new_id
from voxline.services.base import ServiceError

log = logging.getLogger("voxline.modelserver")

KINDS = ("stt", "llm", "tts")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROUTES: dict[str, tuple[str, Handler]] = {
    "stt": ("/v1/audio/transcriptions", server_stt.transcriptions),
    "llm": ("/v1/chat/completions", server_llm.chat_completions),
    "tts": ("/v1/audio/speech", server_tts.speech),
}
_OPEN_PATHS = ("/healthz", "/readyz", "/metrics")  # probes and scrapes: counts only, nothing secret
_ROUTE_LABELS = frozenset({"/v1/audio/transcriptions", "/v1/chat/completions", "/v1/audio/speech", "/v1/models",
                           server_llm.HOLD_PATH, "/healthz", "/readyz", "/metrics"})


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes OpenAI-shaped JSON; nothing leaks a traceback to the client."""
    try:
        return await handler(request)
    except ApiError as exc:
        return openai_error_response(exc.status, exc.code, exc.detail, exc.param)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status)
        message = f"no route for {request.method} {request.path}" if exc.status in (404, 405) else exc.reason
        return openai_error_response(exc.status, code, message, headers={k: v for k, v in exc.headers.items()
                                                                  if k.lower() == "allow"})
    except web.RequestPayloadError as exc:  # a body the parser rejected (voxline.http_protocol)
        code, detail = http_protocol.bad_body(exc)
        response = openai_error_response(400, code, detail)
        response.force_close()
        return response
    except ServiceError as exc:
        log.warning("model failed", extra={"error": str(exc), "path": request.path})
        return openai_error_response(500, "model_error", f"model failed: {exc}")
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return openai_error_response(500, "internal_error", "internal server error")


@web.middleware
async def _access(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One structured log line per request, and an `X-Request-ID` to match it with."""
    rid = request.headers.get("X-Request-ID", "")[:64] or new_id("req")
    started = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        if not resp.prepared:
            resp.headers["X-Request-ID"] = rid
        return resp
    finally:
        state = request.app[STATE]
        route = request.path if request.path in _ROUTE_LABELS else "other"  # bounded label values
        state.metrics.request(route, status, time.perf_counter() - started)
        if request.path not in _OPEN_PATHS:
            log.info("request", extra={"method": request.method, "path": request.path, "status": status,
                                       "ms": round((time.perf_counter() - started) * 1000), "request_id": rid,
                                       "kind": request.app[STATE].kind})


def _gate(settings: Settings) -> Any:
    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Bearer auth (when an api_key is set) and readiness, before any body is read."""
        if request.path in _OPEN_PATHS:
            return await handler(request)
        if settings.api_key:
            header = request.headers.get("Authorization", "")
            token = header[7:] if header[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), settings.api_key.encode()):
                return openai_error_response(401, "invalid_api_key",
                                             "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        state = request.app[STATE]
        if not state.ready and request.path.startswith("/v1/"):
            return openai_error_response(503, "not_ready", "the model is not ready yet", headers={"Retry-After": "1"})
        if request.method != "POST" or request.path == server_llm.HOLD_PATH:  # a hold is no model work
            return await handler(request)
        # One bounded queue per model: beyond it a request is told to come back, so a flood of
        # long requests makes itself wait, not the agent's next short one behind an endless line.
        if state.admitted >= settings.model_queue:
            state.metrics.rejected.inc()
            return openai_error_response(429, "model_busy", f"the model has {state.admitted} requests in hand; retry",
                                         headers={"Retry-After": "1"})
        state.admitted += 1
        try:
            return await handler(request)
        finally:
            state.admitted -= 1

    return gate


async def _healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"status": "ok", "kind": state.kind, "model": state.backend.name})


async def _readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not state.ready:
        return openai_error_response(503, "not_ready", "not ready")
    return web.json_response({"status": "ready", "kind": state.kind, "model": state.backend.name})


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus text: requests by route and status, time spent, the queue, readiness, the process."""
    return prometheus.response(request.app[STATE].metrics.registry)


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"object": "list", "data": [
        {"id": state.backend.name, "object": "model", "created": int(state.started), "owned_by": "voxline"}]})


def create_service_app(kind: str, backend: Any, settings: Settings, ready: bool = True) -> web.Application:
    """The HTTP app serving an already-loaded `backend` (tests share their session models)."""
    if kind not in KINDS:
        raise ValueError(f"unknown service kind {kind!r} (expected stt, llm or tts)")
    http_protocol.install()  # aiohttp's own parser errors as JSON too
    # The stt handler enforces its own (larger) limit while streaming the upload.
    app = web.Application(middlewares=[_access, _errors, _gate(settings)], client_max_size=1024 * 1024)
    app[STATE] = ServiceState(kind=kind, backend=backend, settings=settings, ready=ready)
    app[http_protocol.OPENAI_ERRORS] = True
    path, handler = ROUTES[kind]
    app.router.add_post(path, handler)
    if kind == "llm":
        app.router.add_post(server_llm.HOLD_PATH, server_llm.hold)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


def _build(kind: str, settings: Settings) -> Any:
    from voxline.services import factory, model_files

    model_files.check(settings.replace(stt="whisper", llm="llamacpp", tts="piper"), stages=(kind,))
    if kind == "stt":
        return factory.build_stt(settings.replace(stt="whisper"))
    if kind == "llm":
        return factory.build_llm(settings.replace(llm="llamacpp"))
    return factory.build_tts(settings.replace(tts="piper"))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


async def serve(kind: str, settings: Settings, host: str, port: int) -> None:
    """Load and warm the embedded `kind` model, serve it until cancelled, then clean up.

    The port opens while the model warms: `/healthz` is 200 at once, `/readyz` and `/v1/*`
    answer 503 until the warm-up is done, and again while draining at shutdown.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown service kind {kind!r} (expected stt, llm or tts)")
    if not settings.api_key and not _is_loopback(host):
        log.warning("SERVING %s ON %s WITHOUT AN API KEY: anyone who reaches this port can use the model; "
                    "set VOXLINE_API_KEY (the agent sends it as a bearer token) or bind 127.0.0.1", kind.upper(), host)
    started = time.perf_counter()
    backend = await asyncio.to_thread(_build, kind, settings)  # loading blocks for ~0.5 s
    app = create_service_app(kind, backend, settings, ready=False)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("service listening", extra={"kind": kind, "model": backend.name, "url": f"http://{host}:{port}"})
        warm = getattr(backend, "warm", None)
        if warm is not None:
            await warm()
        app[STATE].ready = True
        log.info("service ready", extra={"kind": kind, "model": backend.name,
                                         "startup_ms": round((time.perf_counter() - started) * 1000)})
        await asyncio.Event().wait()  # until cancelled
    finally:
        app[STATE].ready = False
        log.info("service stopping", extra={"kind": kind})
        await runner.cleanup()
        await backend.close()
