"""The pipeline's "first audio first" gate, for an LLM behind `voxline serve llm`.

The embedded LLM pauses the work nobody waits for yet (the rest of a reply) while a reply's
first TTS piece is synthesized, so the cores go to that audio (`services/llm/schedule.py`).
A remote LLM server cannot see the TTS at work, and stopping reading its SSE stream does not
stop it (a whole reply fits in the socket buffers). So the gate tells the server itself:
`POST /v1/voxline/hold` with `{"holder", "hold"}`, and the server's scheduler holds exactly
as the embedded one does (a due first clause still steps; a hold lapses after 1 s whatever
happens to its release).

Best effort and never in the turn's way: the requests go out in order from one background
task (the pipeline's `clear()`/`set()` do not wait), a failure is ignored, and a server
without the endpoint (a vendor: 404/405) is not asked again. Holding only helps when the
LLM shares cores with the TTS, hence `llm_hold` (auto: when the LLM's URL is loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Hashable

import aiohttp

from voxline.services.http_client import ServiceClient
from voxline.services.llm.holders import current_holder

log = logging.getLogger(__name__)
PATH = "voxline/hold"
SEND_TIMEOUT_S = 1.0  # a hold request slower than this is useless: the hold lapses server-side anyway


class RemoteHold:
    """`clear()`: hold the server's LLM for the current task; `set()`: release it (idempotent)."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client
        self.supported = True  # False once the server said it has no such endpoint
        self.asked = self.sent = 0  # hold and release requests made, and those answered 2xx (for tests)
        self._prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self._held: dict[Hashable, str] = {}  # holder (task) -> its id on the server
        self._queue: asyncio.Queue[tuple[str, bool]] | None = None
        self._worker: asyncio.Task[None] | None = None

    def clear(self) -> None:
        holder = current_holder()
        if self.supported and holder not in self._held:
            self._held[holder] = f"{self._prefix}-{next(self._ids)}"
            self._send(self._held[holder], True)

    def set(self) -> None:
        hid = self._held.pop(current_holder(), None)
        if hid is not None and self.supported:
            self._send(hid, False)

    def _send(self, hid: str, hold: bool) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not on the loop: nothing to send with
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(self._queue), name="llm-hold")
        self._queue.put_nowait((hid, hold))

    async def _run(self, queue: asyncio.Queue[tuple[str, bool]]) -> None:
        """Send the holds and releases one after another, in the order they were asked for."""
        while True:
            hid, hold = await queue.get()
            if not self.supported:
                continue
            self.asked += 1
            try:
                async with self.client.session().post(self.client.url(PATH), json={"holder": hid, "hold": hold},
                                                      timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_S)) as resp:
                    await resp.read()
                    if resp.status in (404, 405):
                        self.supported = False
                        log.info("the llm service has no hold endpoint: not asking again",
                                 extra={"url": self.client.base, "status": resp.status})
                    elif resp.status < 300:
                        self.sent += 1
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.debug("llm hold request failed", extra={"error": repr(exc)})

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        self._worker = self._queue = None
