"""The media server's state and background work, independent of HTTP routing.

A composition of three parts: `SessionLifecycle` (open, end, listening, drop, resume),
`EventRelay` (agent audio and events from the bus to the right caller and watchers) and
`Persistence` (store writes, restart recovery, sweeps). This class starts their background
tasks, holds every one of them, and cancels and awaits them all on `stop`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Coroutine
from typing import Any

from voxline.bus.base import Bus, Subscription
from voxline.bus.messages import make_event, publish
from voxline.bus.topics import Topic
from voxline.config import Settings
from voxline.media.lifecycle import Issued, SessionLifecycle
from voxline.media.metrics import MediaMetrics, TurnTracer
from voxline.media.persistence import SWEEP_EVERY_S, Persistence
from voxline.media.relay import EventRelay
from voxline.rtc.peer import MediaPeer, PeerLimits
from voxline.sessions.registry import Session, SessionRegistry
from voxline.sessions.store import SessionStore
from voxline.sessions.store_memory import MemoryStore

log = logging.getLogger(__name__)


class MediaServer:
    def __init__(self, settings: Settings, bus: Bus, store: SessionStore | None = None,
                 tracer: TurnTracer | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.node = settings.node_id or f"{socket.gethostname()}:{settings.port}"
        self.metrics = MediaMetrics()
        self.registry = SessionRegistry(settings.max_sessions)
        self.peers: dict[str, MediaPeer] = {}
        self.persistence = Persistence(store if store is not None else MemoryStore(), self.registry, self.metrics,
                                       self.node, settings.resume_grace_s)
        self.lifecycle = SessionLifecycle(settings, bus, self.registry, self.peers, self.metrics, self.persistence,
                                          self.node)
        self.relay = EventRelay(self.registry, self.peers, self.metrics,
                                tracer if tracer is not None else TurnTracer.from_settings(settings.otel),
                                self.persistence.changed,
                                self.lifecycle.hand_over,
                                lambda s: self.lifecycle.end_session(s.id, "agent ended the call"))
        self.watchers = self.relay.watchers
        self.backlog = self.relay.backlog
        self.ready = False
        self.draining = False  # SIGTERM: no new sessions, live calls go on until they end or the drain ends
        self.tasks: set[asyncio.Task[None]] = set()
        self._sub: Subscription | None = None

    @property
    def store(self) -> SessionStore:
        return self.persistence.store

    @store.setter
    def store(self, store: SessionStore) -> None:
        self.persistence.store = store

    @property
    def tracer(self) -> TurnTracer | None:
        return self.relay.tracer

    @tracer.setter
    def tracer(self, tracer: TurnTracer | None) -> None:
        self.relay.tracer = tracer

    async def start(self) -> None:
        self.lifecycle.peer_limits = PeerLimits.from_settings(self.settings)  # after the host addresses are set
        await self.store.start()
        for session in await self.persistence.recover():
            self.lifecycle.drop_reason[session.id] = "server restart"
        self._sub = await self.bus.subscribe([Topic.AUDIO_OUT, Topic.EVENTS])
        self._spawn(self.relay.run(self._sub), "media-relay")
        self._spawn(self._housekeeping(), "media-reaper")
        self._spawn(self.persistence.run_writer(), "media-store-writer")
        self.ready = True

    async def drain(self, timeout_s: float) -> int:
        """Stop taking new sessions; let live calls go on for up to `timeout_s`; hand the rest over.

        What a rollout needs: `/readyz` and `POST /whip` answer 503 from now on, so the load
        balancer sends new callers elsewhere, while the calls here carry on. Calls still up when
        the time is over are dropped resumable (`disconnected`, saved to the store): with a
        shared store their callers resume on another media server with their history. Returns
        how many calls were handed over that way.
        """
        self.draining = True
        log.info("draining: %d calls live, waiting up to %.0f s", len(self.peers), timeout_s)
        ended = [asyncio.ensure_future(peer.closed.wait()) for peer in self.peers.values()]
        if ended:
            await asyncio.wait(ended, timeout=timeout_s)
            for waiter in ended:
                waiter.cancel()
        handed = 0
        for peer in list(self.peers.values()):
            handed += await self._hand_over(peer, "media server draining")
        await self.flush()
        if handed:
            log.warning("drain over: %d calls handed over (resumable for %.0f s)", handed, self.settings.resume_grace_s)
        return handed

    async def stop(self) -> None:
        self.ready = False
        for peer in list(self.peers.values()):  # resumable: a restarted or another server takes them
            await self._hand_over(peer, "media server stopped")
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        if self._sub is not None:
            await self._sub.close()
        await self.flush()
        await self.store.close()

    async def _hand_over(self, peer: MediaPeer, reason: str) -> int:
        """Drop a call resumably (saved first), then tell its pages to resume it elsewhere."""
        handed = await self.lifecycle.disconnect(peer, reason)
        if handed:
            self.relay.release_watchers(peer.session.id)
        return handed

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(_report_crash)

    async def _housekeeping(self) -> None:
        """Once a second: end idle, expired and never-connected sessions; sweep the store now and then.

        No error ends this loop: one failure must not stop every later cleanup.
        """
        last_sweep = 0.0
        while True:
            await asyncio.sleep(1.0)
            try:
                now = time.time()
                await self.lifecycle.check(now)
                if now - last_sweep > SWEEP_EVERY_S:
                    last_sweep = now
                    await self.persistence.sweep(now)
                self.relay.forget_ended()
            except Exception:  # noqa: BLE001 - logged; the next second tries again
                log.exception("session reaper failed; trying again in a second")

    # -- the API the HTTP routes use ----------------------------------------------------------
    async def open_session(self, offer_sdp: str, client_ref: str | None) -> tuple[Session, str, Issued]:
        return await self.lifecycle.open_session(offer_sdp, client_ref)

    async def end_session(self, session_id: str, reason: str) -> Session | None:
        return await self.lifecycle.end_session(session_id, reason)

    async def set_listening(self, session: Session, on: bool) -> None:
        await self.lifecycle.set_listening(session, on)

    async def resume_session(self, session_id: str, token: str, offer_sdp: str) -> tuple[Session, str]:
        return await self.lifecycle.resume_session(session_id, token, offer_sdp)

    async def get_session(self, session_id: str) -> Session | None:
        """This server's copy if it has one (freshest), else the store's record."""
        return self.registry.get(session_id) or await self.persistence.load(session_id)

    async def publish_event(self, session_id: str, type_: str, **fields: Any) -> None:
        """Publish an event as this media server (tests and operators; the agent has its own)."""
        await publish(self.bus, make_event(session_id, type_, **fields))

    async def flush(self) -> None:
        await self.persistence.flush()


def _report_crash(task: asyncio.Task[None]) -> None:
    """A background task that ends by itself is a bug: say so (stop() still awaits it)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("media server task %s failed", task.get_name(), exc_info=task.exception())
