"""The typed messages between processes: wire format, tolerance, and one list of event names.

The page, docs/web.md and `bus.messages` must agree on the event types: these tests fail
when the page handles an event nothing sends, misses one that is sent, or the docs' table
drifts from the dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from metrics_text import parse_metrics
from voxline.bus import messages as m
from voxline.bus.memory import MemoryBus
from voxline.bus.topics import Topic

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "src" / "voxline" / "web"
SID = "session_1700000000000_abcdefghijklmnop"

SAMPLES: dict[str, dict[str, Any]] = {  # a value for every field of every message
    "session.start": {"listening": True, "client_ref": "tmp-1"},
    "session.end": {"reason": "hang-up"},
    "listening": {"listening": False},
    "history": {"messages": [{"role": "user", "content": "hi"}], "turn": 3, "listening": True},
    "playback.done": {"turn": 2},
    "playout": {"turn": 2, "position_s": 1.25, "at": 1700000000.5, "playing": False},
    "greeting": {},
    "state": {"state": "thinking", "turn": 1, "listening": True, "session_state": "connected"},
    "transcript.final": {"text": "héllo", "turn": 1, "continued": True},
    "agent.text": {"text": "Paris.", "turn": 1, "final": True},
    "log": {"message": "m", "stage": "vad", "level": "warning"},
    "turn.metrics": {"turn": 1, "metrics": {"stt_ms": 90.5, "speculative": True}},
    "interruption": {"turn": 4},
    "error": {"stage": "llm", "message": "timed out", "turn": 2},
    "session.ended": {"reason": "idle timeout"},
    "agent.resumed": {},
    "agent.hangup": {"turn": 3},
    "pong": {},
}


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in ("session_id", "ts")]


def test_every_message_has_a_sample_with_every_field() -> None:
    names = {*m.CONTROLS, *m.EVENTS}
    assert set(SAMPLES) == names
    for name in names:
        cls = m.CONTROLS.get(name) or m.EVENTS[name]
        if name == "listening":  # a control and an event of the same name and fields
            assert _fields(m.CONTROLS[name]) == _fields(m.EVENTS[name])
        assert set(SAMPLES[name]) == set(_fields(cls)), name


@pytest.mark.parametrize("name", sorted(m.EVENTS))
def test_events_round_trip_with_session_id_type_ts_and_version(name: str) -> None:
    ev = m.EVENTS[name](session_id=SID, **SAMPLES[name])
    obj = json.loads(m.encode(ev))
    assert obj["session_id"] == SID and obj["type"] == name and obj["v"] == m.SCHEMA_VERSION
    assert isinstance(obj["ts"], float)
    assert m.decode_event(m.encode(ev)) == ev


@pytest.mark.parametrize("name", sorted(m.CONTROLS))
def test_controls_round_trip_and_take_the_session_from_the_bus_key(name: str) -> None:
    msg = m.CONTROLS[name](session_id="whatever the body says", **SAMPLES[name])
    got = m.decode_control(m.encode(msg), SID)
    assert got == dataclasses.replace(msg, session_id=SID)


def test_the_wire_format_is_the_one_before_typed_messages() -> None:
    """Producers without `v` (older versions) decode; None-valued optional fields are left out."""
    old = {"session_id": SID, "type": "transcript.final", "ts": 1.5, "text": "hi", "turn": 1}
    assert m.decode_event(json.dumps(old).encode()) == m.TranscriptFinal(session_id=SID, ts=1.5, text="hi", turn=1)
    assert m.to_dict(m.TranscriptFinal(session_id=SID, ts=1.5, text="hi", turn=1)) == {**old, "v": 1}
    ctl = m.decode_control(b'{"type":"session.start","session_id":"x","listening":true}', SID)
    assert ctl == m.SessionStart(session_id=SID, listening=True)
    ev = m.make_event(SID, "state", state="listening", turn=0)
    assert set(m.to_dict(ev)) == {"session_id", "type", "ts", "state", "turn", "v"}


def test_extra_fields_of_a_newer_producer_are_ignored() -> None:
    data = json.dumps({"type": "interruption", "session_id": SID, "turn": 2, "kind": "backchannel"}).encode()
    ev = m.decode_event(data)
    assert isinstance(ev, m.Interruption) and ev.turn == 2


@pytest.mark.parametrize(("data", "reason"), [
    (b"not json", "malformed"),
    (b'{"type":"transcript.partial","session_id":"s","text":"x"}', "unknown_type"),
    (b'{"type":"interruption","session_id":"s","turn":1,"v":2}', "unknown_version"),
    (b'{"type":"interruption","session_id":"s","turn":1,"v":"1"}', "unknown_version"),
    (b'{"type":"interruption","session_id":"s","turn":"1"}', "bad_fields"),
    (b'{"type":"interruption","session_id":"s","turn":true}', "bad_fields"),
    (b'{"type":"interruption","session_id":"s"}', "bad_fields"),
    (b'{"type":"interruption","session_id":7,"turn":1}', "bad_fields"),
    (b'{"type":"turn.metrics","session_id":"s","turn":1,"ts":NaN}', "bad_fields"),
    (b'{"type":"agent.text","session_id":"s","text":"x","turn":1,"final":null}', "bad_fields"),
])
def test_bad_events_are_counted_and_dropped_never_raised(data: bytes, reason: str) -> None:
    before = m.DROPPED[("events", reason)]
    assert m.decode_event(data) is None
    assert m.DROPPED[("events", reason)] == before + 1


def test_bad_controls_are_counted_and_dropped() -> None:
    before = m.DROPPED[("control", "bad_fields")]
    assert m.decode_control(b'{"type":"history","messages":[1, 2]}', SID) is None
    assert m.decode_control(b'{"type":"playback.done","turn":null}', SID) is None
    assert m.DROPPED[("control", "bad_fields")] == before + 2
    assert m.decode_control(b'{"type":"nope"}', SID) is None


def test_an_unknown_event_or_field_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="add its dataclass"):
        m.make_event(SID, "transcript.partial", text="x")
    with pytest.raises(TypeError):
        m.make_event(SID, "interruption", turn=1, kind="x")


async def test_each_message_goes_to_its_topics() -> None:
    bus = MemoryBus()
    await bus.start()
    sub = await bus.subscribe(list(Topic))
    try:
        await m.publish(bus, m.LogLine(session_id=SID, message="x"))
        await m.publish(bus, m.TurnMetrics(session_id=SID, turn=1))
        await m.publish(bus, m.Interruption(session_id=SID, turn=1))
        await m.publish(bus, m.PlaybackDone(session_id=SID, turn=1))
        got = [(msg.topic, json.loads(msg.value)["type"]) for msg in [await sub.__anext__() for _ in range(6)]]
    finally:
        await sub.close()
        await bus.close()
    assert got == [(Topic.EVENTS, "log"), (Topic.LOGS, "log"), (Topic.EVENTS, "turn.metrics"),
                   (Topic.METRICS, "turn.metrics"), (Topic.EVENTS, "interruption"), (Topic.CONTROL, "playback.done")]


# -- one list of names: page, docs ------------------------------------------------------------
def _page_handled() -> set[str]:
    """The event types the page's `handleEvent` switch has a case for."""
    for path in sorted(WEB.glob("*.js")):
        text = path.read_text()
        start = text.find("function handleEvent(")
        if start >= 0:
            body = text[start:text.index("\n}\n", start)]
            return set(re.findall(r'case "([^"]+)":', body))
    raise AssertionError("no handleEvent in src/voxline/web/*.js")


def test_the_page_handles_exactly_the_events_sent_to_it() -> None:
    handled = _page_handled()
    assert not handled - set(m.EVENTS), f"the page handles events nothing sends: {sorted(handled - set(m.EVENTS))}"
    assert not set(m.PAGE_EVENTS) - handled, f"the page misses events: {sorted(set(m.PAGE_EVENTS) - handled)}"
    assert not handled - set(m.PAGE_EVENTS), "the page handles an event that is not relayed to it"


def _docs_table() -> dict[str, tuple[list[str], bool]]:
    text = (ROOT / "docs" / "web.md").read_text()
    section = text[text.index("## The events the page consumes"):]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows[cells[0].strip("`")] = (re.findall(r"`([^`]+)`", cells[1]), cells[2] == "page")
    return rows


def test_docs_web_md_lists_every_event_with_its_fields() -> None:
    expected = {name: (_fields(cls), cls.page) for name, cls in m.EVENTS.items()}
    rows = "\n".join(f"| `{n}` | {', '.join(f'`{f}`' for f in fs)} | {'page' if p else '-'} | ... |"
                     for n, (fs, p) in expected.items())
    assert _docs_table() == expected, f"docs/web.md's event table should read:\n{rows}"


def test_dropped_messages_are_a_metric() -> None:
    from voxline.media.metrics import MediaMetrics

    m.decode_event(b'{"type":"no.such.event","session_id":"s"}')
    n = m.DROPPED[("events", "unknown_type")]
    got = parse_metrics(MediaMetrics().render(0, 0).decode())
    assert got['voxline_bus_messages_dropped_total{reason="unknown_type",topic="events"}'] == n


def test_the_openapi_event_schemas_are_the_messages_and_accept_what_is_sent() -> None:
    import jsonschema

    from voxline.media.openapi import build_openapi

    schemas = build_openapi()["components"]["schemas"]
    union = schemas["Event"]
    assert set(union["discriminator"]["mapping"]) == {*m.PAGE_EVENTS, "pong"}
    resolver = {"components": {"schemas": schemas}, **union}
    for name in union["discriminator"]["mapping"]:
        obj = json.loads(m.encode(m.EVENTS[name](session_id=SID, **SAMPLES[name])))
        jsonschema.validate(obj, resolver)
        minimal = {k: v for k, v in obj.items() if k in (*schemas[f"Event.{m.EVENTS[name].__name__}"]["required"],)}
        jsonschema.validate(minimal, resolver)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "interruption", "session_id": SID, "turn": "1"}, resolver)


async def test_the_agent_process_reports_the_controls_it_dropped() -> None:
    import asyncio
    from types import SimpleNamespace

    from aiohttp.test_utils import TestClient, TestServer

    from voxline.processes import agent_health_app

    m.decode_control(b'{"type":"listening","listening":"yes"}', SID)
    n = m.DROPPED[("control", "bad_fields")]
    orchestrator = SimpleNamespace(sessions={}, ready=asyncio.Event())
    async with TestClient(TestServer(agent_health_app(orchestrator))) as client:  # type: ignore[arg-type]
        text = await (await client.get("/metrics")).text()
    got = parse_metrics(text)
    assert got['voxline_bus_messages_dropped_total{reason="bad_fields",topic="control"}'] == n
    assert got["voxline_agent_sessions"] == 0
