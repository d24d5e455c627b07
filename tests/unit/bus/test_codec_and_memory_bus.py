"""Wire codecs (binary audio, JSON) and the in-process bus."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxline.bus.codec import MAX_JSON_BYTES, AudioKind, AudioMessage, CodecError, decode_json, encode_json
from voxline.bus.memory import MemoryBus
from voxline.bus.topics import Topic

# -- audio codec ----------------------------------------------------------------------------

audio_messages = st.builds(
    AudioMessage,
    session_id=st.text(alphabet=st.characters(max_codepoint=127), max_size=80),
    seq=st.integers(0, 2**32 - 1),
    pcm=st.binary(max_size=2_000).map(lambda b: b[: len(b) // 2 * 2]),
    sample_rate=st.sampled_from([16_000, 22_050, 24_000, 48_000]) | st.integers(8_000, 96_000),
    ts=st.floats(allow_nan=False),
    kind=st.sampled_from(AudioKind),
    turn=st.integers(0, 2**32 - 1),
)


@settings(max_examples=150, deadline=None)
@given(audio_messages)
def test_audio_message_round_trips(msg: AudioMessage) -> None:
    assert AudioMessage.decode(msg.encode()) == msg


@given(st.integers(0, 2**32 - 1).filter(lambda r: not 8_000 <= r <= 96_000))
def test_audio_with_an_absurd_sample_rate_is_rejected(rate: int) -> None:
    with pytest.raises(CodecError):
        AudioMessage.decode(AudioMessage("s", 1, b"\x00\x00", rate).encode())


def test_audio_message_round_trips_nan_timestamp() -> None:
    out = AudioMessage.decode(AudioMessage("s", 1, ts=float("nan")).encode())
    assert math.isnan(out.ts)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_codec_error(data: bytes) -> None:
    try:
        msg = AudioMessage.decode(data)
    except CodecError:
        return
    assert msg.encode() == data  # whatever decodes is exactly a valid message


@settings(max_examples=150, deadline=None)
@given(audio_messages, st.data())
def test_corrupted_messages_never_raise_anything_but_codec_error(msg: AudioMessage, data: st.DataObject) -> None:
    raw = bytearray(msg.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        AudioMessage.decode(bytes(raw[:cut]))
    except CodecError:
        pass


def test_decode_rejects_foreign_and_truncated_messages() -> None:
    good = AudioMessage("session_1_x", 7, b"\x01\x02\x03\x04", turn=3).encode()
    with pytest.raises(CodecError):
        AudioMessage.decode(b"")
    with pytest.raises(CodecError):
        AudioMessage.decode(b"XX" + good[2:])
    with pytest.raises(CodecError):
        AudioMessage.decode(good[:-1])  # half a sample
    with pytest.raises(CodecError):
        AudioMessage.decode(good[:25])  # inside the session ID


def test_seq_and_turn_wrap_to_32_bits() -> None:
    out = AudioMessage.decode(AudioMessage("s", 2**32 + 5, turn=2**32 + 1).encode())
    assert (out.seq, out.turn) == (5, 1)


# -- JSON codec ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=20), st.dictionaries(st.text(max_size=20), json_values, max_size=4))
def test_json_round_trips(type_: str, fields: dict) -> None:
    obj = {**fields, "type": type_}
    assert decode_json(encode_json(obj)) == obj


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_not_json_messages_or_codec_error(data: bytes) -> None:
    try:
        obj = decode_json(data)
    except CodecError:
        return
    assert isinstance(obj, dict) and isinstance(obj["type"], str)


@pytest.mark.parametrize("data", [
    b"", b"{", b"[]", b"42", b'"type"', b"{}", b'{"type": 1}', b'{"type": null}', b"\xff\xfe\x00",
    b"[" * 100_000, b'{"a":' * 50_000, b"\x00" * 10,
])
def test_malformed_json_gives_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_json(data)


def test_oversized_json_gives_codec_error() -> None:
    big = encode_json({"type": "log", "message": "x" * MAX_JSON_BYTES})
    with pytest.raises(CodecError, match="too large"):
        decode_json(big)


# -- memory bus ---------------------------------------------------------------------------------

async def drain(sub, n: int, timeout: float = 1.0) -> list:
    return [await asyncio.wait_for(sub.__anext__(), timeout) for _ in range(n)]


async def test_subscribers_without_a_group_each_get_every_message_in_order() -> None:
    bus = MemoryBus()
    await bus.start()
    a = await bus.subscribe([Topic.EVENTS])
    b = await bus.subscribe([Topic.EVENTS, Topic.LOGS])
    for i in range(5):
        await bus.publish(Topic.EVENTS, "k", bytes([i]))
    await bus.publish(Topic.LOGS, "k", b"log")
    assert [m.value for m in await drain(a, 5)] == [bytes([i]) for i in range(5)]
    got = await drain(b, 6)
    assert [m.value for m in got] == [bytes([i]) for i in range(5)] + [b"log"]
    assert got[-1].topic is Topic.LOGS and got[-1].key == "k"
    assert a.queue.empty()  # not subscribed to logs
    await bus.close()


async def test_only_messages_published_after_subscribing_arrive() -> None:
    bus = MemoryBus()
    await bus.publish(Topic.CONTROL, "k", b"early")
    sub = await bus.subscribe([Topic.CONTROL])
    await bus.publish(Topic.CONTROL, "k", b"late")
    assert [m.value for m in await drain(sub, 1)] == [b"late"]
    await bus.close()


async def test_group_members_split_keys_and_keep_each_key_on_one_member_across_topics() -> None:
    bus = MemoryBus()
    members = [await bus.subscribe([Topic.AUDIO_IN, Topic.CONTROL], group="agents") for _ in range(3)]
    outsider = await bus.subscribe([Topic.CONTROL])
    keys = [f"session_1700000000000_{i:016d}" for i in range(30)]
    for key in keys:
        await bus.publish(Topic.AUDIO_IN, key, b"a")
        await bus.publish(Topic.CONTROL, key, b"c")
    owner: dict[str, int] = {}
    for idx, sub in enumerate(members):
        while not sub.queue.empty():
            msg = await sub.__anext__()
            assert owner.setdefault((msg.key), idx) == idx, "a key reached two members"
    assert sorted(owner) == sorted(keys)  # every key reached exactly one member
    assert len(set(owner.values())) > 1  # and the members share the work
    assert outsider.queue.qsize() == len(keys)  # a group does not take messages from others
    await bus.close()


async def test_two_groups_each_get_every_message() -> None:
    bus = MemoryBus()
    g1 = [await bus.subscribe([Topic.EVENTS], group="one") for _ in range(2)]
    g2 = await bus.subscribe([Topic.EVENTS], group="two")
    for i in range(10):
        await bus.publish(Topic.EVENTS, f"k{i}", b"x")
    assert sum(s.queue.qsize() for s in g1) == 10
    assert g2.queue.qsize() == 10
    await bus.close()


async def test_a_member_leaving_hands_its_keys_to_the_others() -> None:
    bus = MemoryBus()
    a = await bus.subscribe([Topic.AUDIO_IN], group="g")
    b = await bus.subscribe([Topic.AUDIO_IN], group="g")
    await a.close()
    for i in range(10):
        await bus.publish(Topic.AUDIO_IN, f"k{i}", b"x")
    assert b.queue.qsize() == 10
    await bus.close()


async def test_close_ends_iteration_after_queued_messages() -> None:
    bus = MemoryBus()
    sub = await bus.subscribe([Topic.EVENTS])
    await bus.publish(Topic.EVENTS, "k", b"1")
    await bus.publish(Topic.EVENTS, "k", b"2")
    await sub.close()
    await bus.publish(Topic.EVENTS, "k", b"after close")
    got = [m.value async for m in sub]
    assert got == [b"1", b"2"]
    assert [m async for m in sub] == []  # stays closed


async def test_bus_close_wakes_a_waiting_consumer() -> None:
    bus = MemoryBus()
    sub = await bus.subscribe([Topic.EVENTS])

    async def consume() -> list[bytes]:
        return [m.value async for m in sub]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    assert not task.done()  # a quiet topic simply waits
    await bus.close()
    assert await asyncio.wait_for(task, 1.0) == []


async def test_a_full_subscriber_drops_messages_without_blocking_others_and_can_still_close() -> None:
    bus = MemoryBus(queue_size=3)
    slow = await bus.subscribe([Topic.EVENTS])
    fast = await bus.subscribe([Topic.EVENTS])
    for i in range(5):
        await bus.publish(Topic.EVENTS, "k", bytes([i]))
        await fast.__anext__()
    assert slow.dropped == 2
    await slow.close()
    got = [m.value async for m in slow]
    assert got == [bytes([1]), bytes([2])]  # the oldest made room for the end marker
    await bus.close()
