"""The media server's HTTP API as an OpenAPI 3.1 document, served at `GET /openapi.json`.

The paths are written here from the routes in `app.py` (kept small and explicit rather than
found by introspection): every route, its request body, its responses with their statuses.
The schemas are generated, so they cannot drift: the HTTP bodies from the pydantic models
of `voxline.media.bodies` that the handlers answer with (and the one error body
`{"error": code, "detail": text}`, `voxline.http_errors.ErrorBody`), the events WebSocket's
messages from the dataclasses of `voxline.bus.messages`. The fuzz test
(tests/integration/test_fuzz_api.py) checks the live server against this document, so a
route added to `app.py` without a description here shows up as a failure there.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from voxline.bus.messages import EVENTS, Pong, json_schema
from voxline.http_errors import ErrorBody
from voxline.media.bodies import REQUESTS, RESPONSES, SESSION_ID_PATTERN


def _error(description: str, *headers: str) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if headers:
        out["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return out


def _json(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


E400 = _error("Malformed request (bad SDP, bad JSON, malformed session ID).")
E401 = _error("A bearer token is configured and the request did not carry it.", "WWW-Authenticate")
E404 = _error("Unknown session or route.")
# A session's own routes (DELETE, listening, its state, its events): its secret or the operator.
E401_SESSION = _error("Neither this session's secret (X-Session-Token) nor the operator's token was presented.",
                      "WWW-Authenticate")
E403_SESSION = _error("The presented credential does not open this session.")
SESSION_ONLY = {"401": E401_SESSION, "403": E403_SESSION}
SESSION_SECURITY: list[dict[str, list[str]]] = [{"sessionToken": []}, {"bearer": []}]
E405 = _error("Method not allowed on this route.", "Allow")
E409 = _error("The session has ended.")
E413 = _error("The request body is larger than the server accepts.")
E415 = _error("Wrong Content-Type.")
E429 = _error("Too many sessions created from this address.", "Retry-After")
E503 = _error("The server is not ready or holds its maximum of sessions.", "Retry-After")

SID_PARAM = {"name": "session_id", "in": "path", "required": True, "description": "The server-issued session ID.",
             "schema": {"type": "string", "pattern": SESSION_ID_PATTERN}}
LISTENING_BODY = {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/SessionRef"}}}}


def _common(op: dict[str, Any], auth: bool) -> dict[str, Any]:
    """Add the failures every route can answer: 405 on a wrong method, 401 when auth is on."""
    responses = op.setdefault("responses", {})
    responses.setdefault("405", E405)
    if auth:
        responses.setdefault("401", E401)
    else:
        op["security"] = []
    return op


def _event_schemas() -> dict[str, Any]:
    """The events WebSocket's messages, from the dataclasses in `voxline.bus.messages` (no drift)."""
    names = {cls.__name__: cls for cls in EVENTS.values() if cls.page or cls is Pong}
    out: dict[str, Any] = {f"Event.{name}": json_schema(cls) for name, cls in names.items()}
    out["Event"] = {"description": "One message of the events WebSocket, told apart by `type`.",
                    "oneOf": [{"$ref": f"#/components/schemas/Event.{name}"} for name in names],
                    "discriminator": {"propertyName": "type",
                                      "mapping": {cls.type: f"#/components/schemas/Event.{name}"
                                                  for name, cls in names.items()}}}
    return out


def _body_schemas() -> dict[str, Any]:
    """The HTTP bodies' schemas, from the models in `voxline.media.bodies` (no drift): responses
    as they are sent, requests as they are checked."""
    out: dict[str, Any] = {}
    models: list[tuple[type[BaseModel], str, JsonSchemaMode]] = [
        *((m, m.__name__, "serialization") for m in RESPONSES), *((m, m.__name__, "validation") for m in REQUESTS),
        (ErrorBody, "Error", "serialization")]
    for model, name, mode in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
        out.update(schema.pop("$defs", {}))
        out[name] = schema
    return out


def build_openapi(auth: bool = False, server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document; `auth` marks the bearer-protected routes as such."""
    listening = {
        "requestBody": LISTENING_BODY,
        "responses": {"200": _json("Listening state set.", "#/components/schemas/Listening"),
                      "400": E400, "404": E404, "409": E409, "413": E413, "415": E415, **SESSION_ONLY},
        "x-session-secret": True,
    }
    paths: dict[str, dict[str, Any]] = {
        "/whip": {
            "post": {
                "summary": "Create a session from a WHIP (RFC 9725) SDP offer.",
                "operationId": "whipCreate",
                "parameters": [{"name": "X-Session-ID", "in": "header", "required": False,
                                "description": "A client's temporary ID, recorded as client_ref (1-64 of [A-Za-z0-9_.:-]).",
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/sdp": {"schema": {"type": "string"}}}},
                "responses": {
                    "201": {"description": "Session created: the SDP answer.",
                            "headers": {h: {"$ref": f"#/components/headers/{h}"}
                                        for h in ("Location", "X-Session-ID", "X-Session-Token", "ETag")},
                            "content": {"application/sdp": {"schema": {"type": "string"}}}},
                    "400": E400, "413": E413, "415": E415, "429": E429, "503": E503,
                },
            },
            "options": {"summary": "WHIP capabilities / CORS preflight.", "operationId": "whipOptions",
                        "responses": {"204": {"description": "Allowed methods in Allow, Accept-Post."}}},
        },
        "/whip/{session_id}": {
            "parameters": [SID_PARAM],
            "delete": {"summary": "End the session (hang up).", "operationId": "whipDelete",
                       "x-session-secret": True,
                       "responses": {"200": _json("Session ended.", "#/components/schemas/Ended"),
                                     "400": E400, "404": E404, **SESSION_ONLY}},
            "patch": {"summary": "Trickle ICE: not supported (send all candidates in the offer).",
                      "operationId": "whipPatch",
                      "requestBody": {"required": False, "content": {
                          "application/trickle-ice-sdpfrag": {"schema": {"type": "string"}}}},
                      "responses": {"400": E400, "405": E405, "413": E413}},
            "options": {"summary": "CORS preflight for the session resource.", "operationId": "whipResourceOptions",
                        "responses": {"204": {"description": "Allowed methods in Allow."}}},
        },
        "/listening/start": {"post": {"summary": "Audio reaches the agent from now on.",
                                      "operationId": "listeningStart", **listening}},
        "/listening/stop": {"post": {"summary": "Audio stops reaching the agent.",
                                     "operationId": "listeningStop", **listening}},
        "/sessions": {"get": {
            "summary": "Live and recently ended sessions of this media server.", "operationId": "listSessions",
            "parameters": [
                {"name": "state", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "Only sessions in these states (comma-separated)."},
                {"name": "since", "in": "query", "required": False, "schema": {"type": "number"},
                 "description": "Created at or after this Unix time."},
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}},
                {"name": "offset", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
                {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "next_cursor of the previous page."},
                {"name": "client_ref", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {"200": _json("The sessions.", "#/components/schemas/SessionList"),
                          "400": E400, "503": E503}}},
        "/sessions/{session_id}": {"get": {
            "summary": "One session's state and analytics.", "operationId": "getSession",
            "parameters": [SID_PARAM], "x-session-secret": True,
            "responses": {"200": _json("The session.", "#/components/schemas/Session"), "400": E400, "404": E404,
                          **SESSION_ONLY}}},
        "/sessions/{session_id}/events": {"get": {
            "summary": "The session's events as JSON messages over a WebSocket (backlog first).",
            "description": ("Upgrade to a WebSocket. The session's secret (or the operator's token) may be "
                            "given as `?token=`, the only route that reads a query token. Client messages: "
                            '`{"type":"ping"}` (answered by a pong event); others are ignored. Messages over '
                            "4 KiB close the socket with 1009; a client flooding messages is closed with 1008."),
            "operationId": "sessionEvents", "x-session-secret": True,
            "parameters": [SID_PARAM, {"name": "token", "in": "query", "required": False,
                                       "schema": {"type": "string"}}],
            "x-message-schema": {"$ref": "#/components/schemas/Event"},  # each WebSocket text message
            "responses": {"101": {"description": "Switching to the WebSocket protocol; then one JSON text message "
                                                 "per event (`#/components/schemas/Event`)."},
                          "400": E400, "401": E401_SESSION,
                          "403": _error("The page's Origin is not allowed, or the credential does not open this session."),
                          "404": E404}}},
        "/healthz": {"get": {"summary": "Liveness.", "operationId": "healthz", "security": [],
                             "responses": {"200": _json("Alive.", "#/components/schemas/Status")}}},
        "/readyz": {"get": {"summary": "Readiness.", "operationId": "readyz", "security": [],
                            "responses": {"200": _json("Ready.", "#/components/schemas/Ready"), "503": E503}}},
        "/ice-servers": {"get": {
            "summary": "The ICE servers (STUN/TURN) a caller should use, with time-limited TURN credentials.",
            "operationId": "iceServers",
            "responses": {"200": _json("RTCIceServer objects for RTCPeerConnection.",
                                       "#/components/schemas/IceServers")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics.", "operationId": "metrics",
                             "responses": {"200": {"description": "Prometheus text format.",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document.", "operationId": "openapi",
                                  "responses": {"200": {"description": "OpenAPI 3.1.",
                                                        "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/": {"get": {"summary": "The web page.", "operationId": "index", "security": [],
                      "responses": {"200": {"description": "HTML.", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/{name}": {"get": {
            "summary": "The page's static assets.", "operationId": "staticFile", "security": [],
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}}],
            "responses": {"200": {"description": "The file.", "content": {
                mt: {"schema": {"type": "string"}} for mt in
                ("text/javascript", "text/css", "image/svg+xml", "image/png", "image/x-icon", "text/html")}},
                "404": E404}}},
    }
    for path_item in paths.values():
        for method, op in path_item.items():
            if method != "parameters" and isinstance(op, dict):
                public = op.get("security") == [] or method == "options"
                _common(op, auth and not public)
                if public:
                    op["security"] = []
                if op.pop("x-session-secret", False):  # open with or without the callers' token
                    op["security"] = SESSION_SECURITY
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "voxline media server", "version": "1",
                 "description": "WHIP in, voice agent out. Every error is JSON {\"error\", \"detail\"}."},
        "paths": paths,
        "components": {
            "schemas": {
                **_event_schemas(),
                **_body_schemas(),
            },
            "headers": {
                "Location": {"schema": {"type": "string"}, "description": "/whip/{session_id}"},
                "X-Session-ID": {"schema": {"type": "string"}, "description": "The server's session ID."},
                "X-Session-Token": {"schema": {"type": "string"},
                                    "description": "This session's secret: what its own routes need (given once)."},
                "ETag": {"schema": {"type": "string"}},
                "Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."},
                "Allow": {"schema": {"type": "string"}},
                "WWW-Authenticate": {"schema": {"type": "string"}},
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "The callers' token; the operator's token opens every route."},
                                "sessionToken": {"type": "apiKey", "in": "header", "name": "X-Session-Token",
                                                 "description": "A session's secret, from POST /whip."}},
        },
    }
    if auth:
        doc["security"] = [{"bearer": []}]
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


async def openapi_json(request: web.Request) -> web.Response:
    """`GET /openapi.json`: behind the bearer token like the rest of the API (when one is set)."""
    from voxline.media.whip import SERVER_KEY

    auth = bool(request.app[SERVER_KEY].settings.auth_token)
    return web.json_response(build_openapi(auth=auth))
