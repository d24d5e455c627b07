"""An agent on SIGTERM (`Orchestrator.drain`): replies in flight finish, then it leaves its group."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from voxline.agent.orchestrator import Orchestrator
from voxline.bus.memory import MemoryBus
from voxline.bus.messages import SessionStart, encode
from voxline.bus.topics import Topic
from voxline.config import Settings

SID = "session_1760000000000_abcdefghijklmnop"
OTHER = "session_1760000000001_abcdefghijklmnop"


async def _orchestrator() -> tuple[Orchestrator, MemoryBus]:
    bus = MemoryBus()
    await bus.start()
    orchestrator = Orchestrator(Settings(), bus, models=None)  # type: ignore[arg-type]  # no session gets made here
    await orchestrator.start()
    return orchestrator, bus


def _replying(orchestrator: Orchestrator, reply: asyncio.Task[None]) -> None:
    orchestrator.sessions[SID] = SimpleNamespace(reply_task=reply)  # type: ignore[assignment]


async def test_drain_waits_for_the_reply_in_flight_then_stops_consuming() -> None:
    orchestrator, bus = await _orchestrator()
    finished = asyncio.Event()

    async def reply() -> None:
        await asyncio.sleep(0.3)
        finished.set()

    _replying(orchestrator, asyncio.create_task(reply()))
    await asyncio.wait_for(orchestrator.drain(timeout_s=30), 10)
    assert finished.is_set()  # the caller heard the whole answer before the agent left
    assert orchestrator._task is None  # consumer gone: its partitions go to the other agents
    await bus.publish(Topic.CONTROL, OTHER, encode(SessionStart(session_id=OTHER, listening=True)))
    await asyncio.sleep(0.05)
    assert OTHER not in orchestrator.sessions  # a drained agent takes no new session
    orchestrator.sessions.clear()
    await orchestrator.stop()
    await bus.close()


async def test_drain_is_bounded_by_its_timeout_and_does_not_cut_the_reply_itself() -> None:
    orchestrator, bus = await _orchestrator()
    reply = asyncio.create_task(asyncio.sleep(30))
    _replying(orchestrator, reply)
    await asyncio.wait_for(orchestrator.drain(timeout_s=0.2), 5)
    assert not reply.done()  # stopping is the shutdown's business, after the drain
    reply.cancel()
    orchestrator.sessions.clear()
    await orchestrator.stop()
    await bus.close()
