"""Every JSON message between processes, typed, in one place.

Two families, one dataclass per message `type`:
- `Control`: the `control` topic, media server -> agent (session start/end, listening,
  history hand-over, playback done, the playout's send timeline);
- `Event`: the `events` topic, agent (and media server) -> media server -> page, some
  also copied to `logs` or `metrics` (`topics`).

Adding a message, or a field, is one dataclass (or one line) here: the registry, the codec,
the field checks, the relay, docs/web.md's table and the page check follow from it.

Wire format (backward compatible with the dicts used before): one JSON object with `type`,
`session_id`, the schema version `v` (absent means 1), events also `ts` (seconds), and each
field by name; an optional field left at None is omitted. Decoding never raises: a message
that does not parse, an unknown type, a newer version or a field of the wrong type is
counted in `DROPPED` (a /metrics counter) and logged, and None comes back. Unknown extra
fields are ignored, so a newer producer may add optional fields without a version bump.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from voxline.bus.base import Bus
from voxline.bus.codec import CodecError, decode_json, encode_json
from voxline.bus.schema import field_specs, fits, hint_schema
from voxline.bus.topics import Topic

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
DROPPED: Counter[tuple[str, str]] = Counter()  # (topic, reason) -> messages dropped on decode


CONTROLS: dict[str, type[Control]] = {}  # filled by subclassing: every Control below
EVENTS: dict[str, type[Event]] = {}  # and every Event


def _now() -> float:
    return round(time.time(), 3)


@dataclass(frozen=True, kw_only=True)
class Control:
    """media -> agent on `control`; the bus key is the session ID."""

    type: ClassVar[str]
    topics: ClassVar[tuple[Topic, ...]] = (Topic.CONTROL,)
    session_id: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        CONTROLS[cls.type] = cls


@dataclass(frozen=True, kw_only=True)
class Event:
    """agent or media -> media relay -> page on `events` (`ts` is when it was made)."""

    type: ClassVar[str]
    topics: ClassVar[tuple[Topic, ...]] = (Topic.EVENTS,)
    page: ClassVar[bool] = True  # relayed to the page's WebSocket, so the page handles it
    session_id: str
    ts: float = field(default_factory=_now)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        EVENTS[cls.type] = cls


# -- control ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class SessionStart(Control):
    type: ClassVar[Literal["session.start"]] = "session.start"
    listening: bool = False
    client_ref: str | None = None


@dataclass(frozen=True, kw_only=True)
class SessionEnd(Control):
    type: ClassVar[Literal["session.end"]] = "session.end"
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class SetListening(Control):
    type: ClassVar[Literal["listening"]] = "listening"
    listening: bool


@dataclass(frozen=True, kw_only=True)
class History(Control):
    """The conversation so far, for an agent that took a session over without it."""

    type: ClassVar[Literal["history"]] = "history"
    messages: list[dict[str, Any]] = field(default_factory=list)
    turn: int = 0
    listening: bool | None = None


@dataclass(frozen=True, kw_only=True)
class PlaybackDone(Control):
    """The caller has heard the end of `turn`'s reply (the playout queue drained)."""

    type: ClassVar[Literal["playback.done"]] = "playback.done"
    turn: int


@dataclass(frozen=True, kw_only=True)
class Played(Control):
    """When the media server's playout sent `turn`'s audio: from `at` (its `time.time()`), the
    audio `position_s` seconds into the turn goes out continuously; `playing` False: from `at`
    nothing of the turn goes out (paused, drained, cleared). The agent's echo canceller places
    its reference by it. One per run of playout, so a few per reply (at most one a frame)."""

    type: ClassVar[Literal["playout"]] = "playout"
    turn: int
    position_s: float
    at: float
    playing: bool = True


@dataclass(frozen=True, kw_only=True)
class Greet(Control):
    """Speak the greeting, if one is set (the orchestrator's cue after `session.start`)."""

    type: ClassVar[Literal["greeting"]] = "greeting"


# -- events -----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class StateChanged(Event):
    type: ClassVar[Literal["state"]] = "state"
    state: str
    turn: int | None = None
    listening: bool | None = None  # the rest: the WebSocket's first event (a snapshot)
    session_state: str | None = None


@dataclass(frozen=True, kw_only=True)
class Listening(Event):
    type: ClassVar[Literal["listening"]] = "listening"
    listening: bool


@dataclass(frozen=True, kw_only=True)
class TranscriptFinal(Event):
    type: ClassVar[Literal["transcript.final"]] = "transcript.final"
    text: str
    turn: int
    continued: bool | None = None  # the turn went on after a pause: this text replaces the earlier one


@dataclass(frozen=True, kw_only=True)
class AgentText(Event):
    type: ClassVar[Literal["agent.text"]] = "agent.text"
    text: str
    turn: int
    final: bool = False  # False: a delta to append; True: the whole reply


@dataclass(frozen=True, kw_only=True)
class LogLine(Event):
    type: ClassVar[Literal["log"]] = "log"
    topics: ClassVar[tuple[Topic, ...]] = (Topic.EVENTS, Topic.LOGS)
    message: str
    stage: str = "session"  # whip | session | vad | stt | llm | tts
    level: str = "info"  # info | warning | error


@dataclass(frozen=True, kw_only=True)
class TurnMetrics(Event):
    type: ClassVar[Literal["turn.metrics"]] = "turn.metrics"
    topics: ClassVar[tuple[Topic, ...]] = (Topic.EVENTS, Topic.METRICS)
    turn: int
    metrics: dict[str, Any] = field(default_factory=dict)  # `*_ms` stage times, `speculative`, ...


@dataclass(frozen=True, kw_only=True)
class Interruption(Event):
    type: ClassVar[Literal["interruption"]] = "interruption"
    turn: int


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(Event):
    type: ClassVar[Literal["error"]] = "error"
    stage: str
    message: str
    turn: int | None = None


@dataclass(frozen=True, kw_only=True)
class SessionEnded(Event):
    type: ClassVar[Literal["session.ended"]] = "session.ended"
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class AgentResumed(Event):
    """An agent picked the session up without its history: the media server hands it over."""

    type: ClassVar[Literal["agent.resumed"]] = "agent.resumed"
    page: ClassVar[bool] = False


@dataclass(frozen=True, kw_only=True)
class AgentHangup(Event):
    """The agent's end_call tool ran and its goodbye (`turn`) has played: the media server ends the call."""

    type: ClassVar[Literal["agent.hangup"]] = "agent.hangup"
    page: ClassVar[bool] = False
    turn: int


@dataclass(frozen=True, kw_only=True)
class Pong(Event):
    """The WebSocket's answer to a client's `{"type":"ping"}` (the page does not ping)."""

    type: ClassVar[Literal["pong"]] = "pong"
    page: ClassVar[bool] = False


PAGE_EVENTS: tuple[str, ...] = tuple(name for name, cls in EVENTS.items() if cls.page)


# -- codec ------------------------------------------------------------------------------------
def to_dict(msg: Control | Event) -> dict[str, Any]:
    """The message as its JSON object (`session_id`, `type`, `ts`, fields, `v`)."""
    out: dict[str, Any] = {"session_id": msg.session_id, "type": msg.type}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if f.name != "session_id" and not (value is None and f.default is None):
            out[f.name] = value
    out["v"] = SCHEMA_VERSION
    return out


def encode(msg: Control | Event) -> bytes:
    return encode_json(to_dict(msg))


def make_event(session_id: str, type_: str, **fields: Any) -> Event:
    """The typed event for `type_` (for callers that hold a name and fields, like `Emit`).

    An unknown type or field is a programming error and raises: add it here.
    """
    cls = EVENTS.get(type_)
    if cls is None:
        raise ValueError(f"unknown event type {type_!r}: add its dataclass to voxline.bus.messages")
    return cls(session_id=session_id, **fields)


async def publish(bus: Bus, msg: Control | Event) -> None:
    """Publish on the message's topics (events; `log` also on logs, `turn.metrics` on metrics)."""
    payload = encode(msg)
    for topic in msg.topics:
        await bus.publish(topic, msg.session_id, payload)


def decode_control(data: bytes, session_id: str) -> Control | None:
    """A control message; its session is the bus key (whatever the body says)."""
    return _decode(data, CONTROLS, Topic.CONTROL, session_id)


def decode_event(data: bytes) -> Event | None:
    return _decode(data, EVENTS, Topic.EVENTS, None)


M = TypeVar("M", Control, Event)


def _decode(data: bytes, registry: dict[str, type[M]], topic: Topic, session_id: str | None) -> M | None:
    try:
        obj = decode_json(data)
    except CodecError as exc:
        _drop(topic, "malformed", str(exc))
        return None
    kind = obj["type"]
    cls = registry.get(kind)
    if cls is None:
        _drop(topic, "unknown_type", f"type {kind[:40]!r}")
        return None
    version = obj.get("v", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        _drop(topic, "unknown_version", f"{kind} version {str(version)[:20]}")
        return None
    if session_id is not None:
        obj["session_id"] = session_id
    values: dict[str, Any] = {}
    for name, hint, required in field_specs(cls):
        if name not in obj:
            if required:
                _drop(topic, "bad_fields", f"{kind} without {name!r}")
                return None
            continue
        if not fits(obj[name], hint):
            _drop(topic, "bad_fields", f"{kind}.{name} is not {hint}")
            return None
        values[name] = obj[name]
    return cls(**values)


def _drop(topic: Topic, reason: str, detail: str) -> None:
    """Count and (now and then) log a message that cannot be used."""
    DROPPED[(topic.value, reason)] += 1
    n = DROPPED[(topic.value, reason)]
    if n & (n - 1) == 0:  # the 1st, 2nd, 4th, 8th ...: a flood does not flood the log
        log.warning("dropped a %s message (%s, %d so far): %s", topic.value, reason, n, detail)


def json_schema(cls: type[Control | Event]) -> dict[str, Any]:
    """The JSON Schema of one message as it is on the wire (for the OpenAPI document)."""
    props: dict[str, Any] = {"type": {"const": cls.type}, "v": {"type": "integer", "const": SCHEMA_VERSION}}
    required = ["type"]
    for name, hint, needed in field_specs(cls):
        props[name] = hint_schema(hint)
        if needed:
            required.append(name)
    doc = cls.__doc__ or ""
    described = doc and not doc.startswith(cls.__name__ + "(")  # not the signature dataclass writes
    return {"type": "object", "required": required, "properties": props,
            "description": doc.strip() if described else cls.type}
