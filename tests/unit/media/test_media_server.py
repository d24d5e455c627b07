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


async def test_the_reaper_logs_a_failure_and_sweeps_again(caplog: Any) -> None:
    """#14.1: a sweep that raises is logged, and the next second's sweep still ends sessions."""
    bus = MemoryBus()
    await bus.start()
    media = MediaServer(Settings(session_idle_timeout_s=0.5), bus)
    await media.start()
    real, calls = media.lifecycle.check, 0

    async def fails_once(now: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("store exploded")
        await real(now)

    media.lifecycle.check = fails_once  # type: ignore[method-assign]
    session = media.registry.create()
    try:
        for _ in range(50):
            if session.ended:
                break
            await asyncio.sleep(0.1)
        assert session.ended and session.end_reason == "idle timeout" and calls >= 2
        assert any("session reaper failed" in r.getMessage() and r.exc_info for r in caplog.records)
        assert not any(t.done() for t in media.tasks)  # the loop is still running
    finally:
        await media.stop()
        await bus.close()


async def test_closing_a_peer_whose_connection_hangs_is_bounded(caplog: Any) -> None:
    """#14.1: cleanup never hangs on aiortc: a close that never returns is given up after
    `close_timeout_s` and logged."""
    from voxline.rtc.peer import MediaPeer, PeerLimits
    from voxline.sessions.registry import Session

    async def closed(_: str, __: str) -> None:
        pass

    peer = MediaPeer(Session(id="session_1700000000000_" + "a" * 16), MemoryBus(), closed, 2,
                     limits=PeerLimits(close_timeout_s=0.3))
    real_close = peer.pc.close

    async def hangs() -> None:
        await asyncio.Event().wait()

    peer.pc.close = hangs  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(peer.close(), 5)  # returns: well before this outer guard
        assert any("did not finish cleanly" in r.getMessage() for r in caplog.records)
    finally:
        await real_close()
