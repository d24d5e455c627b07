"""In-process servers on loopback: the media server alone, and the whole voice loop on real models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from voxline.agent.models import Models
from voxline.agent.orchestrator import Orchestrator
from voxline.bench.system import free_port
from voxline.bus.base import Bus
from voxline.bus.memory import MemoryBus
from voxline.config import Settings
from voxline.media.app import create_app
from voxline.media.server import MediaServer
from voxline.services.threads import ModelThread
from voxline.services.turn_model import SmartTurn


@dataclass
class Running:
    url: str
    media: MediaServer
    orchestrator: Orchestrator | None
    settings: Settings


async def start_server(settings: Settings, models: Models | None, bus: Bus | None = None) -> tuple[Running, list]:
    """The media server (and the agent when `models` are given) on loopback, on `bus` or an in-memory one."""
    bus = bus or MemoryBus()
    await bus.start()
    orchestrator = None
    if models is not None:
        orchestrator = Orchestrator(settings, bus, models)
        await orchestrator.start()
    media = MediaServer(settings, bus)
    await media.start()
    port = free_port()
    runner = web.AppRunner(create_app(media, settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    cleanup = [runner.cleanup, media.stop] + ([orchestrator.stop] if orchestrator else []) + [bus.close]
    return Running(f"http://127.0.0.1:{port}", media, orchestrator, settings), cleanup


async def stop_server(cleanup: list, step_timeout_s: float = 40.0) -> None:
    """Each step bounded, so a bus whose broker is gone cannot hang the test session."""
    for step in cleanup:
        async with asyncio.timeout(step_timeout_s):
            await step()


@pytest.fixture(scope="session")
def turn_model() -> Iterator[SmartTurn]:
    """Smart Turn v3 from the pipecat-ai wheel, as `voxline run` loads it."""
    model = SmartTurn()
    yield model
    model.close()


@pytest.fixture(scope="session")
def models(stt, llm, tts, vad_model, turn_model) -> Models:  # type: ignore[no-untyped-def]
    return Models(stt, llm, tts, vad_model, ModelThread("vad"), turn_model=turn_model if turn_model.available else None)


@pytest.fixture(scope="session")
async def voice_server(models: Models) -> AsyncIterator[Running]:
    """The whole voice loop, as `voxline run` builds it, on the session's models."""
    await models.warm()
    # echo_cancel: the echo test's caller has no echo cancellation of its own (off by default).
    running, cleanup = await start_server(Settings(max_sessions=8, session_create_rate_per_min=1000, echo_cancel=True),
                                          models)
    yield running
    await stop_server(cleanup)


@pytest.fixture
async def media_server(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    """The media server with no agent (HTTP contract tests); settings via indirect params."""
    overrides = getattr(request, "param", {})
    settings = Settings(**{"max_sessions": 3, "session_create_rate_per_min": 1000, **overrides})
    running, cleanup = await start_server(settings, None)
    yield running
    await stop_server(cleanup)
    await asyncio.sleep(0)
