"""Session API: listening control, session state and list, health, readiness, metrics."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from voxline.media.errors import ApiError
from voxline.media.whip import SERVER_KEY, session_id_from_path
from voxline.sessions.ids import is_valid_session_id
from voxline.sessions.registry import Session


async def _session_from_body(request: web.Request) -> Session:
    try:
        body: Any = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body must be JSON: {\"session_id\": \"...\"}") from None
    sid = body.get("session_id") if isinstance(body, dict) else None
    if sid is None:
        raise ApiError(400, "missing_session_id", "the body must be JSON: {\"session_id\": \"...\"}")
    if not is_valid_session_id(sid):
        raise ApiError(400, "malformed_session_id", "session IDs look like session_{unix_ms}_{16 chars of [0-9a-z]}")
    session = request.app[SERVER_KEY].registry.get(sid)
    if session is None:
        raise ApiError(404, "unknown_session", f"no session {sid}")
    if session.ended:
        raise ApiError(409, "session_ended", f"session {sid} has ended")
    return session


async def listening_start(request: web.Request) -> web.Response:
    session = await _session_from_body(request)
    await request.app[SERVER_KEY].set_listening(session, True)
    return web.json_response({"session_id": session.id, "listening": True})


async def listening_stop(request: web.Request) -> web.Response:
    session = await _session_from_body(request)
    await request.app[SERVER_KEY].set_listening(session, False)
    return web.json_response({"session_id": session.id, "listening": False})


async def get_session(request: web.Request) -> web.Response:
    sid = session_id_from_path(request)
    session = request.app[SERVER_KEY].registry.get(sid)
    if session is None:
        raise ApiError(404, "unknown_session", f"no session {sid}")
    return web.json_response(session.to_json())


async def list_sessions(request: web.Request) -> web.Response:
    sessions = request.app[SERVER_KEY].registry.all()
    state = request.query.get("state")
    if state:
        sessions = [s for s in sessions if s.state.value == state]
    return web.json_response({"sessions": [s.to_json() for s in sessions], "count": len(sessions)})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    if not server.ready:
        raise ApiError(503, "not_ready", "starting or stopping", {"Retry-After": "2"})
    return web.json_response({"status": "ready", "sessions": server.registry.live_count()})


async def metrics(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    live = list(server.registry.live())
    lines = [
        "# TYPE voxline_sessions_active gauge",
        f"voxline_sessions_active {len(live)}",
        "# TYPE voxline_sessions_created_total counter",
        f"voxline_sessions_created_total {server.counters['sessions_created']}",
        "# TYPE voxline_sessions_ended_total counter",
        f"voxline_sessions_ended_total {server.counters['sessions_ended']}",
        "# TYPE voxline_playout_frames_late_total counter",
        f"voxline_playout_frames_late_total {sum(p.playout.frames_late for p in server.peers.values())}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
