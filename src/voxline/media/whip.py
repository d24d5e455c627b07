"""WHIP (RFC 9725): POST an SDP offer to create a session, DELETE its resource to end it."""

from __future__ import annotations

import re
import secrets
import time
from collections import defaultdict, deque

from aiohttp import web

from voxline.http_errors import ApiError
from voxline.media.resume import ResumeError
from voxline.media.server import MediaServer
from voxline.rtc.sdp import SdpError
from voxline.sessions.ids import is_valid_session_id
from voxline.sessions.registry import SessionLimitReached

CLIENT_REF = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
SERVER_KEY = web.AppKey("media_server", MediaServer)


class RateLimiter:
    """Sliding one-minute window of session creations per client address."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.hits: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, client: str, now: float | None = None) -> float | None:
        """None if allowed, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        hits = self.hits[client]
        while hits and now - hits[0] > 60:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return 60 - (now - hits[0])
        hits.append(now)
        if len(self.hits) > 10_000:
            self.hits = defaultdict(deque, {k: v for k, v in self.hits.items() if v})
        return None


RATE_KEY = web.AppKey("rate_limiter", RateLimiter)


async def post_whip(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    if request.content_type != "application/sdp":
        raise ApiError(415, "unsupported_media_type", "WHIP offers must be sent as Content-Type: application/sdp")
    wait = request.app[RATE_KEY].allow(request.remote or "unknown")
    if wait is not None:
        raise ApiError(429, "rate_limited", "too many sessions created from this address",
                       {"Retry-After": str(max(1, int(wait)))})
    if not server.ready:
        raise ApiError(503, "not_ready", "the server is starting", {"Retry-After": "2"})
    if server.draining:  # a rollout: this pod is going away, the next try reaches another
        raise ApiError(503, "draining", "this media server is shutting down: retry", {"Retry-After": "1"})
    try:
        offer = await request.text()
    except UnicodeDecodeError:
        raise ApiError(400, "bad_sdp", "the offer is not UTF-8 text") from None
    raw_ref = request.headers.get("X-Session-ID")
    resume_token = request.headers.get("X-Resume-Token")
    token: str | None = None
    try:
        if resume_token is not None:  # reconnecting to a session this server issued (docs/sessions.md)
            if not is_valid_session_id(raw_ref):
                raise ApiError(400, "malformed_session_id", "a resume needs X-Session-ID: the server's session ID")
            session, answer = await server.resume_session(str(raw_ref), resume_token, offer)
        else:
            client_ref = raw_ref if raw_ref and CLIENT_REF.fullmatch(raw_ref) else None
            session, answer, token = await server.open_session(offer, client_ref)
    except SessionLimitReached:
        raise ApiError(503, "session_limit", f"the server holds its maximum of {server.settings.max_sessions} sessions",
                       {"Retry-After": "10"}) from None
    except SdpError as exc:
        raise ApiError(400, "bad_sdp", str(exc)) from None
    except ResumeError as exc:
        raise ApiError(exc.status, exc.code, exc.detail) from None
    # Absolute behind a proxy that rewrites paths or hosts (VOXLINE_PUBLIC_URL); relative otherwise.
    location = f"{server.settings.public_url.rstrip('/')}/whip/{session.id}"
    headers = {
        "Location": location,
        "X-Session-ID": session.id,
        "ETag": f'"{secrets.token_hex(8)}"',
        "Link": '</listening/start>; rel="voxline-listening"',
    }
    if token is not None:
        headers["X-Resume-Token"] = token
    return web.Response(status=201, text=answer, content_type="application/sdp", headers=headers)


async def delete_whip(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    sid = session_id_from_path(request)
    session = server.registry.get(sid)
    if session is None:
        raise ApiError(404, "unknown_session", f"no session {sid}")
    if session.ended:
        raise ApiError(404, "session_ended", f"session {sid} has already ended")
    await server.end_session(sid, "ended by the client (DELETE)")
    return web.json_response({"session_id": sid, "state": "ended"})


async def patch_whip(request: web.Request) -> web.Response:
    session_id_from_path(request)
    raise ApiError(405, "method_not_allowed", "trickle ICE is not supported: send all candidates in the offer",
                   {"Allow": "DELETE, OPTIONS"})


async def options_whip(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Allow": "POST, OPTIONS", "Accept-Post": "application/sdp"})


async def options_resource(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Allow": "DELETE, OPTIONS"})


def session_id_from_path(request: web.Request) -> str:
    sid = request.match_info["session_id"]
    if not is_valid_session_id(sid):
        raise ApiError(400, "malformed_session_id", "session IDs look like session_{unix_ms}_{16 chars of [0-9a-z]}")
    return sid
