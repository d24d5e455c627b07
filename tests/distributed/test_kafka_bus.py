"""KafkaBus against a real Kafka-protocol broker (tansu on loopback): no mocks.

Every wait is bounded; assertions are about behaviour, never about how long things took.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import statistics
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from voxline.bus import TOPICS, Message, Subscription, Topic, create_bus
from voxline.bus.codec import AudioMessage, decode_json, encode_json
from voxline.bus.kafka import KafkaBus, KafkaBusError
from voxline.bus.kafka_config import topic_configs
from voxline.bus.messages import TranscriptFinal, to_dict
from voxline.config import Settings

pytestmark = pytest.mark.distributed

GROUP_WAIT_S = 30.0  # joins and rebalances take ~3 s on tansu; generous bound


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class Reader:
    """Drains a subscription into a list in the background."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.got: list[Message] = []
        self.stamps: list[float] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for msg in self.sub:
            self.got.append(msg)
            self.stamps.append(time.perf_counter())

    def keys(self) -> set[str]:
        return {m.key for m in self.got}

    async def close(self) -> None:
        await self.sub.close()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def bus(kafka_settings: Settings) -> AsyncIterator[KafkaBus]:
    b = KafkaBus(kafka_settings, connect_timeout_s=20)
    await b.start()
    yield b
    await b.close()


async def test_create_bus_gives_kafka_bus(kafka_settings: Settings) -> None:
    assert isinstance(create_bus(kafka_settings), KafkaBus)


async def test_start_creates_every_topic_with_configured_partitions(kafka_settings: Settings) -> None:
    settings = kafka_settings.replace(topic_partitions=3)  # tansu's auto-create default is 4
    first = KafkaBus(settings, connect_timeout_s=20)
    await first.start()
    second = KafkaBus(settings, connect_timeout_s=20)  # topics exist already: fine
    await second.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        names = [settings.topic_prefix + t.value for t in TOPICS]
        assert set(names) <= set(await admin.list_topics())
        for desc in await admin.describe_topics(names):
            assert desc["error_code"] == 0
            assert len(desc["partitions"]) == 3, desc["topic"]
    finally:
        await admin.close()
        await first.close()
        await second.close()


async def _configs(admin: AIOKafkaAdminClient, name: str) -> dict[str, str]:
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    (_, _, _, _, entries), = response.resources
    return {entry[0]: entry[1] for entry in entries}


async def test_topics_are_created_with_bounded_retention(kafka_settings: Settings) -> None:
    settings = kafka_settings.replace(audio_retention_ms=120_000, event_retention_ms=3_600_000)
    bus = KafkaBus(settings, connect_timeout_s=20)
    await bus.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        audio = await _configs(admin, settings.topic_prefix + Topic.AUDIO_IN.value)
        assert audio["retention.ms"] == "120000"
        assert audio["retention.bytes"] == str(settings.audio_retention_bytes)
        assert audio["cleanup.policy"] == "delete"
        assert int(audio["segment.ms"]) <= 120_000  # whole segments are deleted: they must roll first
        events = await _configs(admin, settings.topic_prefix + Topic.EVENTS.value)
        assert events["retention.ms"] == "3600000"
        for topic in TOPICS:  # every topic, not only the two looked at above
            assert (await _configs(admin, settings.topic_prefix + topic.value)) == topic_configs(settings, topic)
    finally:
        await admin.close()
        await bus.close()


async def test_an_existing_unbounded_audio_topic_is_reported_at_start(
        kafka_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    name = kafka_settings.topic_prefix + Topic.AUDIO_IN.value
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    await admin.start()
    try:  # made by someone else, keeping audio for ever
        await admin.create_topics([NewTopic(name, kafka_settings.topic_partitions, 1,
                                            topic_configs={"retention.ms": "-1"})])
    finally:
        await admin.close()
    caplog.set_level(logging.WARNING, logger="voxline.bus.kafka")
    bus = KafkaBus(kafka_settings, connect_timeout_s=20)
    await bus.start()
    await bus.close()
    warned = [r.getMessage() for r in caplog.records if "retention" in r.getMessage()]
    assert len(warned) == 1, warned  # that topic only: the others voxline made itself
    assert name in warned[0] and "retention.ms=-1" in warned[0] and "unbounded" in warned[0]


async def test_round_trip_binary_audio_and_json(bus: KafkaBus) -> None:
    reader = Reader(await bus.subscribe([Topic.AUDIO_IN, Topic.EVENTS]))
    sid = "session_1700000000000_abc"
    audio = AudioMessage(sid, seq=7, pcm=bytes(range(256)) * 2 + b"\x00\xff" * 480, ts=12.5, turn=2)
    ev = to_dict(TranscriptFinal(session_id=sid, text="héllo wörld", turn=1))
    await bus.publish(Topic.AUDIO_IN, sid, audio.encode())
    await bus.publish(Topic.EVENTS, sid, encode_json(ev))
    await wait_until(lambda: len(reader.got) >= 2, 15, "two messages")
    by_topic = {m.topic: m for m in reader.got}
    assert by_topic[Topic.AUDIO_IN].key == sid
    assert isinstance(by_topic[Topic.AUDIO_IN].topic, Topic)
    assert AudioMessage.decode(by_topic[Topic.AUDIO_IN].value) == audio
    assert decode_json(by_topic[Topic.EVENTS].value) == ev
    await reader.close()


async def test_per_key_order_of_200_messages(bus: KafkaBus) -> None:
    reader = Reader(await bus.subscribe([Topic.AUDIO_IN]))
    keys = [f"session_1700000000000_k{i}" for i in range(3)]
    for seq in range(200):
        for key in keys:
            await bus.publish(Topic.AUDIO_IN, key, AudioMessage(key, seq, b"\x01\x00" * 320).encode())
    await wait_until(lambda: len(reader.got) >= 600, 30, "600 messages")
    for key in keys:
        seqs = [AudioMessage.decode(m.value).seq for m in reader.got if m.key == key]
        assert seqs == list(range(200)), key
    await reader.close()


async def test_broadcast_subscribers_each_get_everything(bus: KafkaBus) -> None:
    readers = [Reader(await bus.subscribe([Topic.EVENTS])) for _ in range(2)]
    sent = [(f"session_1_{i % 7}", encode_json({"session_id": f"session_1_{i % 7}", "type": "log", "n": i})) for i in range(40)]
    for key, value in sent:
        await bus.publish(Topic.EVENTS, key, value)
    for r in readers:
        await wait_until(lambda r=r: len(r.got) >= len(sent), 15, "every broadcast message")
        assert sorted((m.key, m.value) for m in r.got) == sorted(sent)
    for r in readers:
        await r.close()


async def test_quiet_subscription_waits_then_receives(bus: KafkaBus) -> None:
    sub = await bus.subscribe([Topic.CONTROL])
    first = asyncio.create_task(anext(sub))
    done, _ = await asyncio.wait({first}, timeout=3.0)
    assert not done, "a quiet topic must simply wait"
    await bus.publish(Topic.CONTROL, "session_9_q", encode_json({"type": "listening.start"}))
    msg = await asyncio.wait_for(first, 10)
    assert msg.key == "session_9_q" and msg.topic is Topic.CONTROL
    await sub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(sub), 5)


async def _two_members(bus: KafkaBus, group: str) -> tuple[Reader, Reader]:
    a = Reader(await bus.subscribe([Topic.AUDIO_IN, Topic.CONTROL], group=group))
    b = Reader(await bus.subscribe([Topic.AUDIO_IN, Topic.CONTROL], group=group))
    partitions = bus.partitions

    def settled() -> bool:
        held_a, held_b = a.sub.assignment, b.sub.assignment  # type: ignore[attr-defined]
        return bool(held_a) and bool(held_b) and not held_a & held_b and len(held_a | held_b) == 2 * partitions

    await wait_until(settled, GROUP_WAIT_S, "both members to hold their partitions")
    return a, b


async def test_group_members_split_keys_and_keep_a_session_together(bus: KafkaBus) -> None:
    a, b = await _two_members(bus, "agents")
    keys = [f"session_1700000000000_{i:03d}" for i in range(24)]
    for key in keys:
        await bus.publish(Topic.CONTROL, key, encode_json({"type": "session.start"}))
        for seq in range(3):
            await bus.publish(Topic.AUDIO_IN, key, AudioMessage(key, seq, b"\x00\x00" * 160).encode())
    await wait_until(lambda: len(a.got) + len(b.got) >= 4 * len(keys), 20, "every group message")
    assert len(a.got) + len(b.got) == 4 * len(keys)  # each message to one member only
    assert a.keys() and b.keys() and not a.keys() & b.keys()
    for member in (a, b):
        for key in member.keys():  # noqa: SIM118 - Reader.keys() is a method, not a dict view
            topics = [m.topic for m in member.got if m.key == key]
            assert topics.count(Topic.CONTROL) == 1 and topics.count(Topic.AUDIO_IN) == 3
    await a.close()
    await b.close()


async def test_member_leaving_hands_its_keys_over_without_loss(bus: KafkaBus) -> None:
    a, b = await _two_members(bus, "agents")
    keys = [f"session_1700000000000_{i:03d}" for i in range(24)]
    for key in keys:
        await bus.publish(Topic.AUDIO_IN, key, AudioMessage(key, 0).encode())
    await wait_until(lambda: len(a.got) + len(b.got) >= len(keys), 20, "first round")
    b_keys = b.keys()
    assert b_keys
    await b.close()  # commits its offsets and leaves: a rebalance follows
    for key in keys:  # published during and after the rebalance
        for seq in (1, 2):
            await bus.publish(Topic.AUDIO_IN, key, AudioMessage(key, seq).encode())
    await wait_until(lambda: len(a.got) >= len(keys) - len(b_keys) + 2 * len(keys), GROUP_WAIT_S,
                     "the remaining member to get every key")
    for key in b_keys:  # continues where b stopped: no loss, no replay of what b consumed
        assert [AudioMessage.decode(m.value).seq for m in a.got if m.key == key] == [1, 2]
    await a.close()


async def test_start_before_broker_is_up_retries_then_succeeds(
        tansu_factory: Callable[..., object], caplog: pytest.LogCaptureFixture) -> None:
    broker = tansu_factory(start=False)
    settings = Settings(bus="kafka", kafka_bootstrap=broker.bootstrap, topic_prefix="late.")  # type: ignore[attr-defined]
    bus = KafkaBus(settings, connect_timeout_s=30)
    caplog.set_level(logging.INFO)
    starting = asyncio.create_task(bus.start())
    await asyncio.sleep(2.0)
    assert not starting.done()
    await asyncio.to_thread(broker.start)  # type: ignore[attr-defined]
    await asyncio.wait_for(starting, 30)
    retries = [r for r in caplog.records if r.name == "voxline.bus.kafka" and "not reachable" in r.getMessage()]
    assert len(retries) >= 2 and all(r.exc_info is None for r in retries)
    assert not [r for r in caplog.records if r.name.startswith("aiokafka") and "Unable connect" in r.getMessage()]
    reader = Reader(await bus.subscribe([Topic.LOGS]))
    await bus.publish(Topic.LOGS, "session_2_x", encode_json({"type": "log"}))
    await wait_until(lambda: len(reader.got) == 1, 15, "a message after a late start")
    await bus.close()


async def test_start_gives_up_with_a_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(bus="kafka", kafka_bootstrap=f"127.0.0.1:{port}", topic_prefix="never.")
    bus = KafkaBus(settings, connect_timeout_s=1.5)
    with pytest.raises(KafkaBusError, match="not reachable"):
        await asyncio.wait_for(bus.start(), 20)


async def test_audio_chunks_arrive_once_in_order_and_their_latency_is_recorded(
        bus: KafkaBus, record_property: Callable[..., None]) -> None:
    """100 audio chunks published 20 ms apart arrive once each, in order, intact; the p50/p95
    of publish -> receive is recorded (a figure, not a timing assertion: that is a benchmark's)."""
    reader = Reader(await bus.subscribe([Topic.AUDIO_IN]))
    sent: list[float] = []
    for seq in range(100):
        sent.append(time.perf_counter())
        await bus.publish(Topic.AUDIO_IN, "session_3_lat", AudioMessage("session_3_lat", seq, b"\x00" * 640).encode())
        await asyncio.sleep(0.02)
    await wait_until(lambda: len(reader.got) >= 100, 20, "100 audio chunks")
    chunks = [AudioMessage.decode(m.value) for m in reader.got]
    assert [c.seq for c in chunks] == list(range(100)), "lost, repeated or reordered chunks"
    assert all(c.session_id == "session_3_lat" and c.pcm == b"\x00" * 640 for c in chunks)
    assert len(reader.stamps) == 100 and all(r > s for s, r in zip(sent, reader.stamps))
    lat = sorted((r - s) * 1000 for s, r in zip(sent, reader.stamps))
    p50, p95 = statistics.median(lat), lat[int(len(lat) * 0.95) - 1]
    record_property("publish_receive_ms_p50", round(p50, 2))
    print(f"\nkafka bus publish->receive on tansu: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    await reader.close()


async def test_broadcast_and_publish_recover_after_a_broker_restart(
        tansu_factory: Callable[..., object]) -> None:
    broker = tansu_factory()
    settings = Settings(bus="kafka", kafka_bootstrap=broker.bootstrap, topic_prefix="rs.")  # type: ignore[attr-defined]
    bus = KafkaBus(settings, connect_timeout_s=20)
    await bus.start()
    reader = Reader(await bus.subscribe([Topic.EVENTS]))
    await bus.publish(Topic.EVENTS, "session_5_r", encode_json({"type": "state", "n": 0}))
    await wait_until(lambda: len(reader.got) == 1, 15, "a message before the restart")
    await asyncio.to_thread(broker.restart)  # type: ignore[attr-defined]
    await bus.ensure_topics()  # tansu comes back empty; Kafka would keep its topics

    async def keep_publishing() -> None:
        n = 1
        while True:
            await bus.publish(Topic.EVENTS, "session_5_r", encode_json({"type": "state", "n": n}))
            n += 1
            await asyncio.sleep(0.1)

    publisher = asyncio.create_task(keep_publishing())
    try:
        await wait_until(lambda: len(reader.got) >= 5, GROUP_WAIT_S, "messages after the restart")
    finally:
        publisher.cancel()
    ns = [decode_json(m.value)["n"] for m in reader.got if m.key == "session_5_r"]
    assert ns[1:] == sorted(ns[1:])  # still in order for the key
    await reader.close()
    await bus.close()
