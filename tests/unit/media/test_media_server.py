"""MediaServer's composition: its background tasks are held and ended, the relay dispatches by type."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from voxline.bus import messages as m
from voxline.bus.memory import MemoryBus
from voxline.bus.topics import Topic
from voxline.config import Settings
from voxline.media.server import MediaServer


async def test_every_background_task_is_held_and_ended_on_stop() -> None:
    bus = MemoryBus()
    await bus.start()
    media = MediaServer(Settings(), bus)
    await media.start()
    tasks = set(media.tasks)
    assert {t.get_name() for t in tasks} == {"media-relay", "media-reaper", "media-store-writer"}
    assert not any(t.done() for t in tasks)
    await media.stop()
    assert all(t.done() for t in tasks) and not media.tasks
    await bus.close()


async def test_the_relay_hands_history_over_and_keeps_inter_process_events_from_the_page() -> None:
    bus = MemoryBus()
    await bus.start()
    media = MediaServer(Settings(), bus)
    await media.start()
    controls = await bus.subscribe([Topic.CONTROL])
    session = media.registry.create()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    media.watchers[session.id].add(queue)
    try:
        await media.publish_event(session.id, "transcript.final", text="hello", turn=1)
        await m.publish(bus, m.AgentResumed(session_id=session.id))
        await bus.publish(Topic.EVENTS, session.id, b'{"type":"from.the.future","session_id":"%s"}' % session.id.encode())
        await media.publish_event(session.id, "log", message="last")
        got = [(await asyncio.wait_for(queue.get(), 5))["type"] for _ in range(2)]
        assert got == ["transcript.final", "log"]  # agent.resumed and the unknown type are not relayed
        history = json.loads((await asyncio.wait_for(controls.__anext__(), 5)).value)
        assert history["type"] == "history" and history["messages"] == [{"role": "user", "content": "hello"}]
        assert [e["type"] for e in media.backlog[session.id]] == ["transcript.final", "log"]
    finally:
        await controls.close()
        await media.stop()
        await bus.close()
