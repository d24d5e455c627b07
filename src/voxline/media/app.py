"""The aiohttp application: routes of the HTTP contract (see README, "API")."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from voxline import http_protocol
from voxline.config import Settings
from voxline.http_errors import ApiError
from voxline.media import api, events_ws, openapi, whip
from voxline.media.middleware import auth, cors, errors, hosts, security_headers
from voxline.media.server import MediaServer

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png",
                ".ico": "image/x-icon", ".html": "text/html"}


def create_app(server: MediaServer, settings: Settings) -> web.Application:
    http_protocol.install()  # aiohttp's own parser errors as JSON too
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[cors(settings), security_headers(settings), errors, hosts(settings),
                                       auth(settings)])
    app[whip.SERVER_KEY] = server
    app[whip.RATE_KEY] = whip.RateLimiter(settings.session_create_rate_per_min)
    app[whip.OWNERS_KEY] = whip.Owners()
    r = app.router
    r.add_post("/whip", whip.post_whip)
    r.add_route("OPTIONS", "/whip", whip.options_whip)
    r.add_delete("/whip/{session_id}", whip.delete_whip)
    r.add_patch("/whip/{session_id}", whip.patch_whip)
    r.add_route("OPTIONS", "/whip/{session_id}", whip.options_resource)
    r.add_post("/listening/start", api.listening_start)
    r.add_post("/listening/stop", api.listening_stop)
    r.add_get("/sessions", api.list_sessions)
    r.add_get("/sessions/{session_id}", api.get_session)
    r.add_get("/sessions/{session_id}/events", events_ws.events)
    r.add_get("/healthz", api.healthz)
    r.add_get("/readyz", api.readyz)
    r.add_get("/metrics", api.metrics)
    r.add_get("/ice-servers", api.ice_servers)
    r.add_get("/openapi.json", openapi.openapi_json)
    r.add_get("/", index)
    r.add_get("/{name:[A-Za-z0-9_.-]+}", static_file)
    return app


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def static_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    path = WEB_DIR / name
    if path.suffix not in STATIC_TYPES or not path.is_file():
        raise ApiError(404, "not_found", f"no route for {request.path}")
    return web.FileResponse(path, headers={"Content-Type": STATIC_TYPES[path.suffix], "Cache-Control": "no-cache"})
