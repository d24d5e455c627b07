"""Hostile input at the edges that are not HTTP: SDP text, session IDs, bus messages.

Each edge must turn garbage into a clean refusal (an `SdpError`, `False`, a log line), never
an unexpected exception, and one bad message must never stop the loop that carries the
other sessions' messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from voxline.agent import session_agent
from voxline.agent.models import Models
from voxline.agent.orchestrator import Orchestrator
from voxline.bus.base import Message
from voxline.bus.codec import AudioKind, AudioMessage, encode_json
from voxline.bus.memory import MemoryBus
from voxline.bus.messages import LogLine, encode
from voxline.bus.topics import Topic
from voxline.config import Settings
from voxline.media.server import MediaServer
from voxline.rtc.sdp import MAX_M_LINES, MAX_SDP_LINE, SdpError, check_offer
from voxline.sessions.ids import ALPHABET, RANDOM_LEN, is_valid_session_id, new_session_id

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

SDP_LINES = st.sampled_from([
    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 9 RTP/AVP 96",
    "a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdef012345", "a=fingerprint:sha-256 AB:CD", "a=rtpmap:111 opus/48000/2",
    "c=IN IP4 0.0.0.0", "a=sendrecv", "a=mid:0", "a=group:BUNDLE 0", "",
]) | st.text(max_size=80)


# -- SDP ------------------------------------------------------------------------------------
@FAST
@given(st.text(max_size=2000))
def test_check_offer_refuses_any_text_cleanly(sdp: str) -> None:
    try:
        check_offer(sdp)
    except SdpError:
        pass


@FAST
@given(st.lists(SDP_LINES, max_size=40), st.sampled_from(["\r\n", "\n", "\r"]))
def test_check_offer_on_sdp_shaped_text(lines: list[str], sep: str) -> None:
    try:
        check_offer(sep.join(["v=0", *lines]))
    except SdpError:
        pass


def test_check_offer_limits_lines_and_m_lines() -> None:
    base = ["v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=ice-ufrag:x", "a=ice-pwd:y", "a=fingerprint:sha-256 AB"]
    check_offer("\r\n".join(base))
    with pytest.raises(SdpError, match="longer than"):
        check_offer("\r\n".join([*base, "a=x" + "y" * MAX_SDP_LINE]))
    with pytest.raises(SdpError, match="m-lines"):
        check_offer("\r\n".join([*base, *["m=audio 9 UDP/TLS/RTP/SAVPF 111"] * MAX_M_LINES]))
    with pytest.raises(SdpError, match="NUL"):
        check_offer("\r\n".join([*base, "a=\x00"]))


# -- session IDs ----------------------------------------------------------------------------
@FAST
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60), st.integers(), st.none(), st.floats(),
                 st.lists(st.text(max_size=5), max_size=3), st.from_regex(r"session_[0-9]{1,20}_[0-9a-z]{14,18}")))
def test_is_valid_session_id_never_raises(value: Any) -> None:
    assert is_valid_session_id(value) in (True, False)


def test_session_ids_carry_at_least_80_bits() -> None:
    import math

    assert len(ALPHABET) == len(set(ALPHABET)) == 36
    assert RANDOM_LEN * math.log2(len(ALPHABET)) >= 80
    tails = {new_session_id().rsplit("_", 1)[1] for _ in range(2000)}
    assert len(tails) == 2000 and all(len(t) == RANDOM_LEN and set(t) <= set(ALPHABET) for t in tails)
    # every letter of the alphabet shows up (the generator uses all 36)
    assert set("".join(tails)) == set(ALPHABET)


# -- bus messages to the agent ----------------------------------------------------------------
class _VadStream:
    def feed(self, pcm: bytes) -> bool:
        return True

    def reset(self) -> None:
        pass


class _Vad:
    def stream(self) -> _VadStream:
        return _VadStream()

    def run_windows(self, streams: list[_VadStream]) -> list[list[tuple[bytes, float]]]:
        return [[] for _ in streams]


class _Thread:
    async def run(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


def _orchestrator(bus: Any) -> Orchestrator:
    models = Models(stt=None, llm=None, tts=None, vad=_Vad(), vad_thread=_Thread())  # type: ignore[arg-type]
    return Orchestrator(Settings(), bus, models)


class _NullBus:
    def __init__(self) -> None:
        self.published: list[tuple[Topic, str, bytes]] = []

    async def publish(self, topic: Topic, key: str, value: bytes) -> None:
        self.published.append((topic, key, value))


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
CONTROL_TYPES = st.sampled_from(["session.start", "session.end", "listening", "history", "playback.done", "nope"])
WELL_TYPED_CONTROL = st.fixed_dictionaries(
    {"type": CONTROL_TYPES},
    optional={"listening": st.booleans(), "turn": st.integers(-5, 10**6),
              "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "x"]),
                                                          "content": st.text(max_size=30)}), max_size=4)})
HOSTILE_CONTROL = st.builds(lambda t, extra: {**extra, "type": t}, CONTROL_TYPES,
                            st.dictionaries(st.sampled_from(["listening", "turn", "messages", "session_id"]),
                                            JSON_VALUES, max_size=3))
KEYS = st.sampled_from([new_session_id(), new_session_id()]) | st.text(max_size=40)


def _values(controls: Any) -> Any:
    return st.one_of(
        st.binary(max_size=300),
        controls.map(lambda obj: encode_json(obj)),
        st.builds(lambda kind, seq, pcm, rate, turn: AudioMessage("x", seq, pcm, rate, 0.0, kind, turn).encode(),
                  st.sampled_from(AudioKind), st.integers(0, 2**32 - 1),
                  st.binary(max_size=640).map(lambda b: b[: len(b) // 2 * 2]),
                  st.sampled_from([16_000, 8_000, 0, 1, 2**32 - 1]), st.integers(0, 2**32 - 1)),
    )


class _Errors(logging.Handler):
    """Records logged at ERROR or above: the workers log what they swallow (`log.exception`),
    so a handler that crashed on a message shows here even though nothing was raised."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> _Errors:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)

    def lines(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in self.records]


async def _settle(orch: Orchestrator) -> None:
    """Let every session's worker take what is queued for it."""
    for _ in range(200):
        await asyncio.sleep(0.002)
        if all(a.inbox.empty() for a in orch.sessions.values()):
            break
    for _ in range(20):
        await asyncio.sleep(0)


async def _dispatch_then_serve(messages: list[tuple[Topic, str, bytes]]) -> None:
    """Garbage through `_dispatch`, then a good session: no handler may have failed on the
    garbage (nothing logged at ERROR), and the good session is served (its events come)."""
    bus = _NullBus()
    orch = _orchestrator(bus)
    with _Errors() as errors, mock.patch.object(session_agent, "HISTORY_WAIT_S", 0.01):
        try:
            for topic, key, value in messages:
                await orch._dispatch(Message(topic, key, value))
            await _settle(orch)
            good = new_session_id()
            before = len(bus.published)
            await orch._dispatch(Message(Topic.CONTROL, good, encode_json(
                {"type": "session.start", "session_id": good, "listening": True})))
            await _settle(orch)
            served = [json.loads(v)["type"] for t, k, v in bus.published[before:] if k == good and t is Topic.EVENTS]
            assert "listening" in served and "state" in served, served
        finally:
            await orch.stop()
    assert not errors.records, errors.lines()


@FAST
@given(st.lists(st.tuples(st.sampled_from([Topic.AUDIO_IN, Topic.CONTROL]), KEYS, _values(WELL_TYPED_CONTROL)),
                min_size=1, max_size=8))
async def test_dispatch_handles_well_typed_garbage_without_a_failure_and_serves_the_next(
        messages: list[tuple[Topic, str, bytes]]) -> None:
    await _dispatch_then_serve(messages)


@FAST
@given(st.lists(st.tuples(st.just(Topic.CONTROL), KEYS, _values(HOSTILE_CONTROL)), min_size=1, max_size=6))
@example([(Topic.CONTROL, "session_1700000000000_" + "a" * 16, b'{"type":"playback.done","turn":null}')])
@example([(Topic.CONTROL, "session_1700000000000_" + "a" * 16, b'{"type":"history","messages":[1,"x",null]}')])
async def test_dispatch_handles_any_control_values_without_a_failure_and_serves_the_next(
        messages: list[tuple[Topic, str, bytes]]) -> None:
    await _dispatch_then_serve(messages)


def test_a_handler_that_fails_is_seen_by_the_fuzz_check() -> None:
    """The check above can fail: a control handler that raises is swallowed by the worker,
    and only the logged failure shows it."""
    async def run() -> None:
        with mock.patch.object(session_agent.SessionAgent, "on_control", side_effect=RuntimeError("boom")):
            await _dispatch_then_serve([(Topic.CONTROL, new_session_id(), b'{"type":"playback.done","turn":1}')])

    with pytest.raises(AssertionError):
        asyncio.run(run())


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from([Topic.AUDIO_IN, Topic.CONTROL]), KEYS, _values(HOSTILE_CONTROL)),
                min_size=1, max_size=10))
async def test_agent_loop_survives_any_message_and_serves_the_next(messages: list[tuple[Topic, str, bytes]]) -> None:
    errors = _Errors().__enter__()  # from the first message on
    bus = MemoryBus()
    await bus.start()
    orch = _orchestrator(bus)
    await orch.start()
    events = await bus.subscribe([Topic.EVENTS])
    try:
        for topic, key, value in messages:
            await bus.publish(topic, key, value)
        good = new_session_id()
        await bus.publish(Topic.CONTROL, good, encode_json({"type": "session.start", "session_id": good, "listening": True}))
        async def until_good() -> None:
            async for msg in events:
                if msg.key == good:
                    return
        await asyncio.wait_for(until_good(), 5)
        assert good in orch.sessions and not orch._task.done()
        assert not errors.records, errors.lines()  # no message made the loop or a worker fail
    finally:
        errors.__exit__()
        await events.close()
        await orch.stop()
        await bus.close()


# -- bus messages to the media server's relay ------------------------------------------------
class _FakePeer:
    def __init__(self) -> None:
        from voxline.rtc.playout import PlayoutTrack

        self.playout = PlayoutTrack()
        self.pc = SimpleNamespace(connectionState="connected")  # what the reaper reads of a peer


EVENT_OBJECTS = st.builds(
    lambda t, sid, extra: {**extra, "type": t, "session_id": sid},
    st.sampled_from(["state", "turn.metrics", "transcript.final", "agent.text", "agent.resumed", "interruption",
                     "error", "log", "x"]),
    st.just("SID") | st.text(max_size=10) | st.none(),
    st.dictionaries(st.sampled_from(["state", "metrics", "turn", "text", "final"]), JSON_VALUES, max_size=3))


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from([Topic.AUDIO_OUT, Topic.EVENTS]), st.booleans(),
                          st.one_of(st.binary(max_size=200), EVENT_OBJECTS,
                                    _values(st.just({"type": "x"})))),
                min_size=1, max_size=10))
async def test_media_relay_survives_any_message_and_relays_the_next(
        messages: list[tuple[Topic, bool, Any]]) -> None:
    errors = _Errors().__enter__()
    bus = MemoryBus()
    await bus.start()
    media = MediaServer(Settings(), bus)
    await media.start()
    session = media.registry.create()
    media.peers[session.id] = _FakePeer()  # type: ignore[assignment]
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    media.watchers[session.id].add(queue)
    try:
        for topic, mine, value in messages:
            if isinstance(value, dict):
                value = json.dumps({**value, "session_id": session.id if value["session_id"] == "SID" else value["session_id"]},
                                   allow_nan=True).encode()
            await bus.publish(topic, session.id if mine else "other", value)
        await bus.publish(Topic.EVENTS, session.id, encode(LogLine(session_id=session.id, message="still here")))
        while True:
            got = await asyncio.wait_for(queue.get(), 5)
            if got.get("message") == "still here":
                break
        # ... and the next good audio reaches the session's playout (a turn after any cleared one)
        playout = media.peers[session.id].playout
        turn = playout.min_turn + 1
        await bus.publish(Topic.AUDIO_OUT, session.id,
                          AudioMessage(session.id, 2**31, b"\x10\x00" * 3200, 16_000, 0.0, AudioKind.AUDIO, turn).encode())
        # A deadline, not a count of short sleeps: the first push builds the resampler
        # (imports on a cold process), which took over a second on a crowded machine.
        deadline = asyncio.get_running_loop().time() + 10
        while not playout.buffer and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        assert playout.buffer, "the next good audio message did not reach the playout"
        assert not any(t.done() for t in media.tasks)
        assert media.registry.get(session.id).state.value != "ended"
        assert not errors.records, errors.lines()  # the relay handled every message; none failed
    finally:
        errors.__exit__()
        media.peers.pop(session.id, None)
        await media.stop()
        await bus.close()
