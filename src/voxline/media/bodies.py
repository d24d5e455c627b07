"""The JSON bodies of the media server's HTTP API, typed once: handlers build their answers
from these models and `openapi.py` writes their JSON Schema, so the document and the
answers cannot drift.

Every model forbids unknown fields: a field added to a handler's answer (or to `Session`) but
not here fails at once, in the handler, not later in a client. The error body is
`voxline.http_errors.ErrorBody` (one error shape for every API of voxline).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from voxline.sessions.ids import RANDOM_LEN
from voxline.sessions.registry import Session as SessionRecord
from voxline.sessions.registry import SessionState

SESSION_ID_PATTERN = rf"^session_(0|[1-9][0-9]{{0,15}})_[0-9a-z]{{{RANDOM_LEN}}}$"


class Body(BaseModel):
    """A response body: its fields are exactly what goes on the wire."""

    # Every field is sent (defaults too), so the schema marks every one required.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)
    omit_none: ClassVar[bool] = False  # True: a field left at None is not sent at all (and is not required)

    def response(self, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.json_response(self.model_dump(mode="json", exclude_none=self.omit_none), status=status,
                                 headers=headers)


class SessionRef(Body):
    """The body of POST /listening/start|stop (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")
    session_id: str = Field(pattern=SESSION_ID_PATTERN)


class Listening(Body):
    session_id: str
    listening: bool


class Ended(Body):
    session_id: str
    state: Literal["ended"] = "ended"


class Session(Body):
    """One session's record: its state, counters, per-turn stage times and history."""

    session_id: str
    client_ref: str | None
    state: SessionState
    listening: bool
    conversation_state: str
    created_at: float
    last_activity: float
    ended_at: float | None
    end_reason: str | None
    turns: int = Field(ge=0)
    interruptions: int = Field(ge=0)
    errors: int = Field(ge=0)
    turn_metrics: list[dict[str, Any]] = Field(description="Per turn: `turn` and the agent's `*_ms` stage times.")
    history: list[dict[str, str]] = Field(description="The conversation: `role` and `content` per message.")
    disconnected_at: float | None
    node: str = Field(description="The media server that holds (or held) the peer.")
    duration_s: float

    @classmethod
    def of(cls, session: SessionRecord) -> Session:
        """The record as sent (never the resume token's hash); a field `Session` gains and this
        model lacks is a ValidationError here, at once."""
        return cls.model_validate(session.to_json())


class Percentiles(Body):
    p50: float | None
    p95: float | None
    n: int = Field(ge=0)


class Durations(Body):
    total: float
    p50: float | None
    p95: float | None


class Aggregates(Body):
    """Counts and latency percentiles over every session that matched the query."""

    count: int = Field(ge=0)
    by_state: dict[str, int]
    ended_by_reason: dict[str, int]
    turns: int = Field(ge=0)
    interruptions: int = Field(ge=0)
    errors: int = Field(ge=0)
    duration_s: Durations
    server_voice_to_voice_ms: Percentiles
    stages_ms: dict[str, Percentiles]


class SessionList(Body):
    sessions: list[Session]
    count: int = Field(ge=0, description="Sessions on this page.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    aggregates: Aggregates


class Status(Body):
    status: Literal["ok"] = "ok"


class Ready(Body):
    status: Literal["ready"] = "ready"
    sessions: int = Field(ge=0, description="Live sessions here.")
    max_sessions: int = Field(ge=1)


class IceServer(Body):
    """One RTCIceServer: STUN URLs, or TURN URLs with a time-limited credential."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=False)
    omit_none: ClassVar[bool] = True
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServers(Body):
    omit_none: ClassVar[bool] = True
    iceServers: list[IceServer]  # noqa: N815 - the name RTCPeerConnection's configuration uses


RESPONSES: tuple[type[Body], ...] = (Listening, Ended, Session, SessionList, Status, Ready, IceServers)
REQUESTS: tuple[type[Body], ...] = (SessionRef,)
