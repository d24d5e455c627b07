"""The long-running processes: `run` (all in one), `media`, and `agent`.

Each builds its parts from one Settings object, serves HTTP only once it is ready (so
`/healthz` answering means the models are loaded), and shuts down cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web
from prometheus_client import Gauge

from voxline import http_protocol, prometheus
from voxline.agent.models import Models
from voxline.agent.orchestrator import Orchestrator
from voxline.bus import create_bus
from voxline.bus.base import Bus
from voxline.config import Settings
from voxline.media.app import create_app
from voxline.media.server import MediaServer
from voxline.rtc.hooks import check_fast_paths, use_host_addresses
from voxline.sessions.store import create_store

log = logging.getLogger(__name__)


async def start_agent(settings: Settings, bus: Bus, models: Models | None = None) -> tuple[Orchestrator, Models]:
    if models is None:
        models = await asyncio.to_thread(Models.load, settings)
        await models.load_tools(settings)
        await models.warm(settings.system_prompt, settings.prompt_examples)
    orchestrator = Orchestrator(settings, bus, models)
    await orchestrator.start()
    return orchestrator, models


async def serve_http(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app`: the last step of a process's start, once everything else is built."""
    http_protocol.install()  # aiohttp's own parser errors as JSON (the agent's probe app too)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    settle_heap()
    log.info("listening on http://%s:%d", host, port)
    return runner


def settle_heap() -> None:
    """Collect once, then take what is alive out of the garbage collector's sight.

    What a process built to start (models, modules, tables) lives as long as it does, yet
    each full collection walked all of it in the event loop: with 40 calls in a process,
    pauses of 50-70 ms made every call's audio late (30-40 ms after this).
    """
    gc.collect()
    gc.freeze()


async def _bus(stack: AsyncExitStack, settings: Settings) -> Bus:
    bus = create_bus(settings)
    await bus.start()
    stack.push_async_callback(bus.close)
    return bus


async def _agent(stack: AsyncExitStack, settings: Settings, bus: Bus) -> Orchestrator:
    orchestrator, models = await start_agent(settings, bus)
    stack.push_async_callback(models.close)
    stack.push_async_callback(orchestrator.stop)
    return orchestrator


async def _media(stack: AsyncExitStack, settings: Settings, bus: Bus) -> MediaServer:
    use_host_addresses(settings.rtc_host_addresses)
    await check_fast_paths()  # once per process: a hook that cannot install is one warning line
    media = MediaServer(settings, bus, create_store(settings.session_store, settings.data_dir, settings.redis_url,
                                                 settings.session_record_ttl_s))
    await media.start()
    stack.push_async_callback(media.stop)
    await _http(stack, create_app(media, settings), settings)
    return media


async def _http(stack: AsyncExitStack, app: web.Application, settings: Settings) -> None:
    runner = await serve_http(app, settings.host, settings.port)
    stack.push_async_callback(runner.cleanup)


async def run_all(settings: Settings, stop: asyncio.Event | None = None,
                  on_ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Everything in one process: the media server, the agent and the embedded models."""
    async with AsyncExitStack() as stack:
        bus = await _bus(stack, settings)
        orchestrator = await _agent(stack, settings, bus)
        media = await _media(stack, settings, bus)
        print(f"voxline is ready: open http://{settings.host}:{settings.port}/ and talk", flush=True)
        if on_ready is not None:
            await on_ready()
        if await _until_stopped(stop) == signal.SIGTERM:
            await _drain(media.drain(settings.drain_timeout_s), orchestrator.drain(settings.drain_timeout_s))


async def run_media(settings: Settings, stop: asyncio.Event | None = None) -> None:
    async with AsyncExitStack() as stack:
        media = await _media(stack, settings, await _bus(stack, settings))
        if await _until_stopped(stop) == signal.SIGTERM:
            await _drain(media.drain(settings.drain_timeout_s))


async def run_agent(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """The orchestrator alone, with health endpoints on settings.host:settings.port."""
    async with AsyncExitStack() as stack:
        orchestrator = await _agent(stack, settings, await _bus(stack, settings))
        await _http(stack, agent_health_app(orchestrator), settings)
        if await _until_stopped(stop) == signal.SIGTERM:
            await _drain(orchestrator.drain(settings.drain_timeout_s))


def agent_health_app(orchestrator: Orchestrator) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready = orchestrator.ready.is_set() and orchestrator.bus.healthy
        status = "ready" if ready else ("bus_unavailable" if orchestrator.ready.is_set() else "starting")
        return web.json_response({"status": status, "sessions": len(orchestrator.sessions)},
                                 status=200 if ready else 503)

    registry = prometheus.new_registry()
    Gauge("voxline_agent_sessions", "Sessions this agent holds.", registry=registry).set_function(
        lambda: len(orchestrator.sessions))
    registry.register(prometheus.BusDrops())  # control messages the agent could not use

    async def metrics(_: web.Request) -> web.Response:
        return prometheus.response(registry)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def _on_stop_signals(handler: Callable[[signal.Signals], object]) -> None:
    """Call `handler(sig)` on SIGINT and SIGTERM from now on (where the loop can take signals)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler, sig)
        except (NotImplementedError, RuntimeError):
            pass


async def run_until_signal(coro: Awaitable[None]) -> None:
    """Run `coro` as a task and cancel it on SIGINT/SIGTERM, so it cleans up on `docker stop`."""
    task = asyncio.ensure_future(coro)
    _on_stop_signals(lambda _sig: task.cancel())
    try:
        await task
    except asyncio.CancelledError:
        log.info("stopped by signal")


async def _until_stopped(stop: asyncio.Event | None) -> signal.Signals | None:
    """Wait for SIGINT, SIGTERM or `stop`; says which signal (None: `stop` was set)."""
    stop = stop or asyncio.Event()
    got: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        got.append(sig)
        stop.set()

    _on_stop_signals(on_signal)
    await stop.wait()
    log.info("shutting down (%s)", got[0].name if got else "stopped")
    return got[0] if got else None


async def _drain(*steps: Awaitable[Any]) -> None:
    """SIGTERM (a rollout, `docker stop`): let calls finish, bounded; a second signal cuts it short.

    Ctrl-C (SIGINT) skips this: a developer wants the prompt back, and calls stay resumable.
    """
    task = asyncio.ensure_future(asyncio.gather(*steps))
    _on_stop_signals(lambda _sig: task.cancel())
    try:
        await task
    except asyncio.CancelledError:
        log.warning("drain cut short by a second signal")
