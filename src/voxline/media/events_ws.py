"""`/sessions/{id}/events`: the session's JSON events over a WebSocket, backlog first (for the
holder of the session's secret, `voxline.media.access`, or the operator)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web

from voxline.bucket import TokenBucket
from voxline.bus.messages import Pong, StateChanged, to_dict
from voxline.http_errors import ApiError
from voxline.media.access import require_credential, require_session_access
from voxline.media.middleware import allowed_origin
from voxline.media.relay import CLOSE_KEY
from voxline.media.whip import SERVER_KEY, session_id_from_path

log = logging.getLogger(__name__)
MAX_CLIENT_MESSAGE = 4096  # larger client messages close the socket with 1009 (message too big)
MAX_CLIENT_RATE = 20  # client messages per second, sustained (a page pings every few seconds)
MAX_CLIENT_BURST = 60  # beyond this many above the sustained rate, the socket is closed with 1008


async def events(request: web.Request) -> web.WebSocketResponse:
    server = request.app[SERVER_KEY]
    sid = session_id_from_path(request)
    if request.headers.get("Origin") and allowed_origin(request, server.settings) is None:
        raise ApiError(403, "forbidden_origin", "this page's origin may not watch sessions (VOXLINE_CORS_ORIGINS)")
    require_credential(request, query_allowed=True)
    session = server.registry.get(sid)
    if session is None:
        raise ApiError(404, "unknown_session", f"no session {sid}")
    require_session_access(request, session, query_allowed=True)
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_CLIENT_MESSAGE)
    await ws.prepare(request)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for obj in list(server.backlog.get(sid, ())):
        queue.put_nowait(obj)
    queue.put_nowait(to_dict(StateChanged(session_id=sid, state=session.conversation_state,
                                          listening=session.listening, session_state=session.state.value)))
    server.watchers[sid].add(queue)
    sender = asyncio.create_task(_send(ws, queue))
    bucket = TokenBucket(MAX_CLIENT_RATE, MAX_CLIENT_BURST)
    try:
        async for msg in ws:  # clients may ping; anything else is ignored
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not bucket.take():
                log.warning("events WebSocket closed: client message flood", extra={"session_id": sid})
                await ws.close(code=1008, message=b"too many messages")
                break
            if msg.type == WSMsgType.TEXT and msg.data.strip() == '{"type":"ping"}' and queue.qsize() < 1000:
                await queue.put(to_dict(Pong(session_id=sid)))
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        sender.cancel()
        server.watchers[sid].discard(queue)
        if not server.watchers[sid]:
            server.watchers.pop(sid, None)
    return ws


async def _send(ws: web.WebSocketResponse, queue: asyncio.Queue[dict[str, Any]]) -> None:
    try:
        while not ws.closed:
            obj = await queue.get()
            if CLOSE_KEY in obj:  # the call was handed over (relay.release_watchers)
                await ws.close(code=obj[CLOSE_KEY], message=b"resume the call")
                break
            await ws.send_json(obj)
            if obj.get("type") == "session.ended":
                await ws.close()
    except (ConnectionResetError, asyncio.CancelledError):
        pass
