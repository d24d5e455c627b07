"""Session API: listening control, session state and list, health, readiness, metrics."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from aiohttp import web

from voxline.http_errors import ApiError
from voxline.media import analytics, bodies, ice
from voxline.media.access import is_operator, require_credential, require_session_access
from voxline.media.whip import SERVER_KEY, session_id_from_path
from voxline.prometheus import text_response
from voxline.sessions.ids import is_valid_session_id
from voxline.sessions.registry import Session


async def _session_from_body(request: web.Request) -> Session:
    if request.content_type != "application/json":  # text/plain would skip a cross-site page's CORS preflight
        raise ApiError(415, "unsupported_media_type", "the body must be sent as Content-Type: application/json")
    try:
        body: Any = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body must be JSON: {\"session_id\": \"...\"}") from None
    sid = body.get("session_id") if isinstance(body, dict) else None
    if sid is None:
        raise ApiError(400, "missing_session_id", "the body must be JSON: {\"session_id\": \"...\"}")
    if not is_valid_session_id(sid):
        raise ApiError(400, "malformed_session_id", "session IDs look like session_{unix_ms}_{16 chars of [0-9a-z]}")
    require_credential(request)
    session = request.app[SERVER_KEY].registry.get(sid)
    if session is None:
        raise ApiError(404, "unknown_session", f"no session {sid}")
    require_session_access(request, session)
    if session.ended:
        raise ApiError(409, "session_ended", f"session {sid} has ended")
    return session


async def listening_start(request: web.Request) -> web.Response:
    session = await _session_from_body(request)
    await request.app[SERVER_KEY].set_listening(session, True)
    return bodies.Listening(session_id=session.id, listening=True).response()


async def listening_stop(request: web.Request) -> web.Response:
    session = await _session_from_body(request)
    await request.app[SERVER_KEY].set_listening(session, False)
    return bodies.Listening(session_id=session.id, listening=False).response()


async def get_session(request: web.Request) -> web.Response:
    sid = session_id_from_path(request)
    require_credential(request)
    session = await request.app[SERVER_KEY].get_session(sid)  # live here, or from the store
    if session is None:
        raise ApiError(404, "unknown_session", f"no session {sid}")
    require_session_access(request, session)
    return bodies.Session.of(session).response()


async def list_sessions(request: web.Request) -> web.Response:
    """Sessions from the store (all nodes sharing it), filtered and paged, with aggregates."""
    query, limit, offset, cursor = analytics.parse_query(request.query)
    server = request.app[SERVER_KEY]
    await server.flush()  # the latest turns of live sessions
    try:
        sessions = await server.store.query(query)
    except Exception as exc:  # noqa: BLE001 - a store outage is a 503, never a 500
        raise ApiError(503, "store_unavailable", f"the session store cannot be read: {type(exc).__name__}",
                       {"Retry-After": "5"}) from None
    chunk, next_cursor = analytics.page(sessions, limit, offset, cursor)
    records = [bodies.Session.of(s) for s in chunk]
    if not is_operator(request):  # what callers said and heard is for the operator (and each session's owner)
        records = [record.model_copy(update={"history": []}) for record in records]
    return bodies.SessionList(sessions=records, count=len(chunk), next_cursor=next_cursor,
                              aggregates=bodies.Aggregates.model_validate(analytics.aggregates(sessions))).response()


async def healthz(request: web.Request) -> web.Response:
    return bodies.Status().response()


async def readyz(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    if not server.ready:
        raise ApiError(503, "not_ready", "starting or stopping", {"Retry-After": "2"})
    if not server.bus.healthy:
        raise ApiError(503, "bus_unavailable", "the message broker does not answer", {"Retry-After": "2"})
    if server.draining:
        raise ApiError(503, "draining", "shutting down: calls here are finishing", {"Retry-After": "5"})
    live = server.registry.live_count()
    if live >= server.settings.max_sessions:  # out of rotation while full: new callers go to another pod
        raise ApiError(503, "full", f"{live} of {server.settings.max_sessions} sessions live", {"Retry-After": "5"})
    return bodies.Ready(sessions=live, max_sessions=server.settings.max_sessions).response()


async def metrics(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    live = list(server.registry.live())
    disconnected = sum(1 for s in live if s.state.value == "disconnected")
    peers = list(server.peers.values())
    media = Counter(server.metrics.retired)
    paths: Counter[tuple[str, str]] = Counter()
    for peer in peers:
        media.update(peer.counts())
        paths.update(peer.paths().items())
    return text_response(server.metrics.render(len(live), disconnected, media, paths))


async def ice_servers(request: web.Request) -> web.Response:
    """What the page passes to RTCPeerConnection: configured STUN/TURN, fresh TURN credentials."""
    settings = request.app[SERVER_KEY].settings
    body = bodies.IceServers.model_validate({"iceServers": ice.ice_servers(settings)})
    return body.response(headers={"Cache-Control": "no-store"})
