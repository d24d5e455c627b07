"""Per-session secrets: who may end, mute, watch or read one session.

A session ID appears in URLs, logs and events, and the callers' `auth_token` is shared by
every page, so neither may control someone's call. `POST /whip` gives the creator a fresh
128-bit secret in `X-Session-Token` (kept only as a SHA-256 hash in the session record, so
it survives a resume on another media server and a restart). The session's own routes
(`DELETE /whip/{id}`, `/listening/*`, `GET /sessions/{id}`, its events WebSocket) need it, or
the operator's `admin_token`:

- sent as `X-Session-Token: <secret>` or `Authorization: Bearer <secret>`; the events
  WebSocket also takes `?token=<secret>` (browsers cannot set its headers), nowhere else;
- none at all: `401 unauthorized` + `WWW-Authenticate: Bearer`; a wrong one: `403 forbidden`.

A resumed session keeps its secret (the client already holds it; a resume proves ownership
with the separate resume token, which never travels on every call).
"""

from __future__ import annotations

from aiohttp import web

from voxline.http_errors import ApiError
from voxline.media.resume import token_matches
from voxline.sessions.registry import Session

SESSION_TOKEN_HEADER = "X-Session-Token"
OPERATOR = web.RequestKey("operator", bool)  # set by the auth middleware: the admin token was presented


def is_operator(request: web.Request) -> bool:
    return bool(request.get(OPERATOR, False))


def presented(request: web.Request, query_allowed: bool = False) -> str:
    """The session secret the request carries ('' for none)."""
    given = request.headers.get(SESSION_TOKEN_HEADER, "")
    if not given:
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
    if not given and query_allowed:
        given = request.query.get("token", "")
    return given.strip()


def require_credential(request: web.Request, query_allowed: bool = False) -> None:
    """401 before the session is even looked up when nothing was presented."""
    if not is_operator(request) and not presented(request, query_allowed):
        raise ApiError(401, "unauthorized", f"this session's secret is required ({SESSION_TOKEN_HEADER} from POST /whip)",
                       {"WWW-Authenticate": 'Bearer realm="voxline"'})


def require_session_access(request: web.Request, session: Session, query_allowed: bool = False) -> None:
    """The operator, or whoever presents the secret issued for this session (constant time)."""
    if is_operator(request):
        return
    require_credential(request, query_allowed)
    if not token_matches(session.session_token_hash, presented(request, query_allowed)):
        raise ApiError(403, "forbidden", "this credential does not open this session")
