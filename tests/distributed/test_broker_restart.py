"""The broker restarts mid-session (issue 6): the call goes on, no transcript or reply is lost.

A private tansu broker (`tansu_factory`), one media server, one agent and the shared model
services. Turn 1 completes, the broker restarts on the same port, then turn 2 must complete
with its transcript and reply, on the same session and the same peer connection.

tansu keeps everything in memory: it comes back with no topics, no consumer groups and no
committed offsets, where Kafka or Redpanda would come back with all three. The test re-creates
the topics right after the restart with the bus's own `ensure_topics()`, which is what a Kafka
restart looks like to clients (the topics are there when they reconnect); see docs/kafka.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from procs import BusConfig, Deployment, model_services, open_call, proc_logs, unique_prefix  # noqa: F401

from audio_helpers import at48k, words
from sentences import PLANET, SPAIN
from voxline.bus.kafka import KafkaBus
from voxline.config import Settings

pytestmark = pytest.mark.distributed

TURN_TIMEOUT_S = 90.0
SETTLE_TIMEOUT_S = 45.0


@pytest.fixture
async def single(tansu_factory, proc_logs, model_services) -> AsyncIterator[tuple[Any, Deployment]]:  # noqa: F811
    broker = tansu_factory()
    dep = Deployment(proc_logs, BusConfig(broker.bootstrap, unique_prefix(), 4), model_services)
    try:
        await dep.up(agents=1)
        yield broker, dep
    finally:
        dep.stop_all()


async def group_members(bootstrap: str, group: str) -> list[Any]:
    """Members of `group` that hold partitions now (empty while it rebalances, or on error)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    try:
        await admin.start()
        groups = await admin.describe_consumer_groups([group])
        out = []
        for g in groups:
            for entry in g.groups:
                # (error_code, group, state, protocol_type, protocol, members)
                if entry[2] == "Stable":
                    out.extend(entry[5])
        return out
    except Exception:  # noqa: BLE001 - the broker may be half up: report "no members"
        return []
    finally:
        await admin.close()


async def test_the_session_goes_on_across_a_broker_restart(single, speech) -> None:  # noqa: ANN001
    broker, dep = single
    media, agent = dep.media, dep.agents()[0]
    settings = Settings(bus="kafka", kafka_bootstrap=broker.bootstrap, topic_prefix=dep.bus.prefix,
                        topic_partitions=dep.bus.partitions)
    async with open_call(media.url) as caller:
        sid = caller.session_id
        await caller.say(at48k(speech(SPAIN.text)))
        assert await caller.wait_reply_done(after=1, timeout=TURN_TIMEOUT_S), caller.events[-20:]

        restarted_at = time.time()
        await asyncio.to_thread(broker.restart)
        # Kafka would keep its topics; tansu comes back empty: re-create them before clients do.
        await KafkaBus(settings, connect_timeout_s=10).ensure_topics()
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while not await group_members(broker.bootstrap, dep.bus.group):
            assert time.monotonic() < deadline, f"the agent did not rejoin its group:\n{agent.tail()}"
            await asyncio.sleep(0.5)
        print(f"\nbroker restart: the agent's group is stable again {time.time() - restarted_at:.1f} s after")

        end = await caller.say(at48k(speech(PLANET.text)))
        assert await caller.wait_reply_done(after=2, timeout=TURN_TIMEOUT_S), (caller.events[-20:], agent.tail())
        finals = [e for e in caller.of_type("transcript.final") if e.get("turn") == 2]
        assert finals and "planet" in words(finals[-1]["text"]), finals
        replies = [e for e in caller.of_type("agent.text") if e.get("final") and e.get("turn") == 2]
        assert replies and replies[-1]["text"].strip(), replies
        assert caller.first_sound_after(end) is not None, "turn 2's reply audio never reached the caller"
        status, session = await media.get_json_async(f"/sessions/{sid}", headers=caller.session_headers)
        assert status == 200 and session["state"] == "connected" and session["turns"] == 2, session
        assert not caller.of_type("error"), caller.of_type("error")
        assert media.running and agent.running
