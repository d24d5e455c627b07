"""One 20 ms clock for every caller of a process that sends its packets directly.

A caller's microphone is 50 packets a second. Through aiortc's sender each one costs a task
wake-up, a timer, an `RtpPacket` with header extensions and its serialization; a process
driving a hundred callers spent more CPU on that than the server it was measuring. The pacer
wakes once per 20 ms, takes each caller's next Opus payload (`WavSource.next_payload`) and
sends it with a `DirectSender`: header, SRTP, `sendto`, nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import time

from voxline.client.audio import WavSource
from voxline.rtc.send import DirectSender

log = logging.getLogger(__name__)
FRAME_S = 0.02


class Pacer:
    def __init__(self) -> None:
        self._sources: dict[WavSource, DirectSender] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, source: WavSource, sender: DirectSender) -> None:
        """From the next tick on, `source`'s packets go out through `sender` (and not through
        aiortc's sender: the track is marked `paced`)."""
        source.paced = True
        self._sources[source] = sender
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def remove(self, source: WavSource) -> None:
        self._sources.pop(source, None)

    async def _run(self) -> None:
        start = time.monotonic()
        tick = 0
        while self._sources:
            tick += 1
            delay = start + tick * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # the loop was held up for a second: start the clock again
                start, tick = time.monotonic(), 0
            now = time.time()
            for source, sender in list(self._sources.items()):
                if source.readyState != "live":
                    self._sources.pop(source, None)
                    continue
                try:
                    payload, pts = source.next_payload(now)
                    sender.send(payload, pts)
                except Exception:  # noqa: BLE001 - one broken caller must not silence the others
                    log.warning("caller dropped from the pacer", exc_info=True)
                    self._sources.pop(source, None)


_PACERS: dict[asyncio.AbstractEventLoop, Pacer] = {}


def pacer() -> Pacer:
    """This event loop's pacer."""
    loop = asyncio.get_running_loop()
    if loop not in _PACERS:
        for old in [lp for lp in _PACERS if lp.is_closed()]:
            del _PACERS[old]
        _PACERS[loop] = Pacer()
    return _PACERS[loop]
