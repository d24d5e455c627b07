"""WHIP (RFC 9725): POST an SDP offer to create a session, DELETE its resource (with the
session's secret, `voxline.media.access`) to end it."""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from collections import defaultdict, deque

from aiohttp import web

from voxline.http_errors import ApiError
from voxline.media import bodies
from voxline.media.access import SESSION_TOKEN_HEADER, require_credential, require_session_access
from voxline.media.lifecycle import Issued
from voxline.media.resume import ResumeError
from voxline.media.server import MediaServer
from voxline.rtc.sdp import SdpError
from voxline.sessions.ids import is_valid_session_id
from voxline.sessions.registry import SessionLimitReached

CLIENT_REF = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
SERVER_KEY = web.AppKey("media_server", MediaServer)


MAX_CLIENTS = 10_000  # addresses the rate table remembers; beyond, the longest quiet ones go


class RateLimiter:
    """Sliding one-minute window of session creations per client address.

    Only sessions actually created are counted (`record`), so junk offers cannot spend an
    address's budget (behind a NAT, a neighbour's); the table is pruned and bounded.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.hits: dict[str, deque[float]] = defaultdict(deque)

    def wait(self, client: str, now: float | None = None) -> float | None:
        """None if this address may create a session now, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        hits = self.hits.get(client)
        if hits is None:
            return None
        while hits and now - hits[0] > 60:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return 60 - (now - hits[0])
        return None

    def record(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.hits[client].append(now)
        if len(self.hits) > MAX_CLIENTS:
            live = {k: v for k, v in self.hits.items() if v and now - v[-1] <= 60}
            if len(live) > MAX_CLIENTS // 2:  # still crowded: keep the most recent half
                live = dict(sorted(live.items(), key=lambda kv: kv[1][-1])[-(MAX_CLIENTS // 2):])
            self.hits = defaultdict(deque, live)

    def allow(self, client: str, now: float | None = None) -> float | None:
        """`wait`, and count a creation when allowed (for callers that cannot record later)."""
        wait = self.wait(client, now)
        if wait is None:
            self.record(client, now)
        return wait


def client_address(request: web.Request, trusted_proxies: tuple[str, ...]) -> str:
    """Who is asking: the peer address, or behind a trusted proxy the address it forwarded for.

    `X-Forwarded-For` is read right to left, skipping trusted proxies; anyone else's header is
    ignored (it would let a client pick the address its limits are counted against).
    """
    remote = request.remote or "unknown"
    if not trusted_proxies or not _trusted(remote, trusted_proxies):
        return remote
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted_proxies):
            return hop[:64]
    return remote


def _trusted(address: str, proxies: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for proxy in proxies:
        try:
            if ip in ipaddress.ip_network(proxy, strict=False):
                return True
        except ValueError:
            continue
    return False


class Owners:
    """Which address created each live session here, for the per-address cap."""

    def __init__(self) -> None:
        self.by_session: dict[str, str] = {}

    def live(self, client: str, server: MediaServer) -> int:
        for sid in [sid for sid in self.by_session if (s := server.registry.get(sid)) is None or s.ended]:
            del self.by_session[sid]
        return sum(1 for c in self.by_session.values() if c == client)


OWNERS_KEY = web.AppKey("session_owners", Owners)


RATE_KEY = web.AppKey("rate_limiter", RateLimiter)


async def post_whip(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    if request.content_type != "application/sdp":
        raise ApiError(415, "unsupported_media_type", "WHIP offers must be sent as Content-Type: application/sdp")
    settings = server.settings
    client = client_address(request, settings.trusted_proxies)
    limiter, owners = request.app[RATE_KEY], request.app[OWNERS_KEY]
    wait = limiter.wait(client)
    if wait is not None:
        raise ApiError(429, "rate_limited", "too many sessions created from this address",
                       {"Retry-After": str(max(1, int(wait)))})
    if owners.live(client, server) >= settings.max_sessions_per_client:
        raise ApiError(429, "too_many_sessions", f"this address holds {settings.max_sessions_per_client} live "
                       "sessions: end one first", {"Retry-After": "10"})
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
    issued: Issued | None = None
    try:
        if resume_token is not None:  # reconnecting to a session this server issued (docs/sessions.md)
            if not is_valid_session_id(raw_ref):
                raise ApiError(400, "malformed_session_id", "a resume needs X-Session-ID: the server's session ID")
            session, answer = await server.resume_session(str(raw_ref), resume_token, offer)
        else:
            client_ref = raw_ref if raw_ref and CLIENT_REF.fullmatch(raw_ref) else None
            session, answer, issued = await server.open_session(offer, client_ref)
    except SessionLimitReached:
        raise ApiError(503, "session_limit", f"the server holds its maximum of {server.settings.max_sessions} sessions",
                       {"Retry-After": "10"}) from None
    except SdpError as exc:
        raise ApiError(400, "bad_sdp", str(exc)) from None
    except ResumeError as exc:
        raise ApiError(exc.status, exc.code, exc.detail) from None
    if issued is not None:  # a new session (not a resume): it counts against this address
        limiter.record(client)
        owners.by_session[session.id] = client
    # Absolute behind a proxy that rewrites paths or hosts (VOXLINE_PUBLIC_URL); relative otherwise.
    location = f"{server.settings.public_url.rstrip('/')}/whip/{session.id}"
    headers = {
        "Location": location,
        "X-Session-ID": session.id,
        "ETag": f'"{secrets.token_hex(8)}"',
        "Link": '</listening/start>; rel="voxline-listening"',
    }
    if issued is not None:  # a resumed session keeps both secrets the caller already holds
        headers["X-Resume-Token"] = issued.resume_token
        headers[SESSION_TOKEN_HEADER] = issued.session_token
    return web.Response(status=201, text=answer, content_type="application/sdp", headers=headers)


async def delete_whip(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    sid = session_id_from_path(request)
    require_credential(request)
    session = server.registry.get(sid)
    if session is None:
        raise ApiError(404, "unknown_session", f"no session {sid}")
    require_session_access(request, session)
    if session.ended:
        raise ApiError(404, "session_ended", f"session {sid} has already ended")
    await server.end_session(sid, "ended by the client (DELETE)")
    return bodies.Ended(session_id=sid).response()


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
