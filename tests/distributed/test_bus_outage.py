"""A broker outage during a call (#14.6): nothing long-lived dies, readiness follows the broker.

A private tansu broker is stopped for 20 s while a real aiortc caller streams audio into a
media server on the Kafka bus. Every publish during the outage must return (no task of the
call may die on an exception), `/readyz` must say 503 while the broker is gone and 200 once it
is back, and the caller's audio must reach `audio.in` again afterwards, on the same session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from tests.integration.conftest import start_server, stop_server
from voxline.bus import Topic
from voxline.bus.codec import AudioMessage
from voxline.bus.kafka import KafkaBus
from voxline.config import Settings
from voxline.media.server import MediaServer
from voxline.rtc.connection import new_peer_connection

pytestmark = pytest.mark.distributed
OUTAGE_S = 20.0


async def until(cond, what: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (await cond() if asyncio.iscoroutinefunction(cond) else cond()):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


@pytest.fixture
async def media_on_kafka(tansu_factory) -> AsyncIterator[tuple[object, MediaServer, str, Settings]]:  # type: ignore[no-untyped-def]
    broker = tansu_factory()
    settings = Settings(bus="kafka", kafka_bootstrap=broker.bootstrap, topic_prefix="outage.", topic_partitions=2,
                        max_sessions=2, session_create_rate_per_min=1000)
    running, cleanup = await start_server(settings, None, KafkaBus(settings, connect_timeout_s=20))
    yield broker, running.media, running.url, settings
    await stop_server(cleanup)


async def test_a_call_outlives_a_20_s_broker_outage(media_on_kafka) -> None:  # type: ignore[no-untyped-def]
    broker, media, url, settings = media_on_kafka
    watcher = KafkaBus(settings, connect_timeout_s=20)
    await watcher.start()
    sub = await watcher.subscribe([Topic.AUDIO_IN])
    seen: list[AudioMessage] = []

    async def read() -> None:
        async for msg in sub:
            seen.append(AudioMessage.decode(msg.value))

    reader = asyncio.create_task(read())
    pc = new_peer_connection()
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/whip", data=pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp"}) as resp:
            assert resp.status == 201
            sid, answer = resp.headers["X-Session-ID"], await resp.text()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await until(lambda: len(seen) > 25, "no audio on audio.in before the outage", 20)

        async def ready() -> int:
            async with http.get(f"{url}/readyz") as r:
                return r.status

        assert await ready() == 200
        await asyncio.to_thread(broker.stop)
        stopped = time.monotonic()
        await until(lambda: not media.bus.healthy, "the bus did not notice the broker was gone", 15)
        assert await ready() == 503  # out of the rotation while the broker is down
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 200  # but alive: no restart loop
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        peer = media.peers[sid]
        assert all(not t.done() for t in peer._tasks), "a task of the call died during the outage"
        assert pc.connectionState == "connected"

        await asyncio.to_thread(broker.start)
        await KafkaBus(settings, connect_timeout_s=20).ensure_topics()  # tansu comes back empty (Kafka would not)
        await until(lambda: media.bus.healthy, "the bus did not recover", 30)
        await until(ready, "/readyz did not come back", 10)
        mark = max((m.seq for m in seen if m.session_id == sid), default=0)
        await until(lambda: any(m.session_id == sid and m.seq > mark for m in seen),
                    "the caller's audio did not reach audio.in again after the outage", 40)
        assert media.registry.get(sid).state.value == "connected"  # type: ignore[union-attr]
    await pc.close()
    await sub.close()
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await watcher.close()
