"""One caller's WebRTC peer connection: caller audio in -> bus, agent audio from the bus -> caller.

Inbound Opus is taken off the socket and decoded in the event loop straight to 16 kHz mono
(`voxline.rtc.receive`, `voxline.audio.opus`), cut into 20 ms chunks, each stamped with a sequence
number and its arrival time, and published on `audio.in` keyed by session ID, but only while
the session is listening. The agent's voice is encoded to Opus in the loop too, by the
playout track, and sent by a `DirectSender`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import av
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from voxline.audio.opus import OpusEncoder
from voxline.bus.base import Bus
from voxline.bus.codec import AudioMessage, encode_json
from voxline.bus.topics import Topic
from voxline.logs import session_var
from voxline.rtc.connection import new_peer_connection
from voxline.rtc.hooks import decode_inline, receive_direct, tune_jitter_buffers, use_port_range
from voxline.rtc.playout import PlayoutTrack
from voxline.rtc.receive import DirectReceiver
from voxline.rtc.sdp import SdpError, announce_address, check_offer, first_audio_codec
from voxline.rtc.send import DirectSender
from voxline.sessions.registry import Session

log = logging.getLogger(__name__)
CHUNK_BYTES = 640  # 20 ms at 16 kHz s16 mono
MAX_INBOUND = 250  # chunks (5 s) waiting for the bus; beyond this the oldest go (a stalled bus)
class MediaPeer:
    def __init__(self, session: Session, bus: Bus, on_closed: Callable[[str, str], Awaitable[None]],
                 jitter_prefetch: int, send_silence: bool = False,
                 port_range: tuple[int, int] | None = None, announced_address: str = "") -> None:
        self.session = session
        self.bus = bus
        self.on_closed = on_closed
        self.jitter_prefetch = jitter_prefetch  # Settings.rtc_jitter_prefetch: the one default is there
        self.port_range = port_range
        self.announced_address = announced_address
        self.pc = new_peer_connection()
        self.playout = PlayoutTrack(on_drained=self._on_drained, send_silence=send_silence)
        self.seq = 0
        self.frames_in = 0
        self.dropped_in = 0  # caller audio dropped because the bus did not take it in time
        self.direct: DirectReceiver | None = None
        self._pending = bytearray()
        self._inbound: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def answer(self, offer_sdp: str) -> str:
        check_offer(offer_sdp)
        pc = self.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._watch(track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            log.info("peer connection %s", state, extra={"session_id": self.session.id})
            if state == "connected":
                self.session.touch()
            if state in ("failed", "closed"):
                await self.on_closed(self.session.id, f"peer connection {state}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # noqa: BLE001 - aiortc raises many kinds for bad SDP
            raise SdpError(f"the offer could not be applied: {exc}") from exc
        tune_jitter_buffers(pc, self.jitter_prefetch)
        if self.port_range is not None and not use_port_range(pc, *self.port_range):
            log.warning("aiortc internals changed: rtc_port_range not applied", extra={"session_id": self.session.id})
        self.direct = receive_direct(pc, self._on_pcm)  # Opus, straight off the socket
        if not decode_inline(pc, self._on_pcm):  # anything else (PCMU), through aiortc's receiver
            log.warning("aiortc internals changed: audio decoded by its own thread",
                        extra={"session_id": self.session.id})
        self._spawn(self._publish())
        pc.addTrack(self.playout)  # reuses the offered audio m-line: sendrecv when offered
        await pc.setLocalDescription(await pc.createAnswer())
        if first_audio_codec(pc.localDescription.sdp) == "opus":
            self.playout.encoder = OpusEncoder()
            sender = DirectSender.for_connection(pc)
            if sender is not None:  # the agent's voice leaves straight from here, not via aiortc's sender
                self.playout.direct = True
                self._spawn(self._send(sender))
        answer: str = pc.localDescription.sdp
        return announce_address(answer, self.announced_address) if self.announced_address else answer

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.playout.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.pc.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def counts(self) -> dict[str, int]:
        """This call's media counters (summed over calls into /metrics' counters)."""
        direct = self.direct
        return {"frames_late": self.playout.frames_late, "audio_dropped": self.dropped_in,
                "rtp_concealed": direct.concealed if direct else 0, "rtp_late": direct.late if direct else 0,
                "rtp_errors": direct.errors if direct else 0}

    def _on_pcm(self, pcm: bytes, rtp_time: int = 0) -> None:
        """A decoded 20 ms of caller audio (16 kHz mono), in the loop, as it arrives."""
        self.frames_in += 1
        self.session.touch()  # media flowing = the caller is there, listening or not
        pending = self._pending
        pending += pcm
        while len(pending) >= CHUNK_BYTES:
            chunk = bytes(pending[:CHUNK_BYTES])
            del pending[:CHUNK_BYTES]
            if self.session.listening:
                if self._inbound.qsize() >= MAX_INBOUND:
                    self._inbound.get_nowait()
                    self.dropped_in += 1
                self._inbound.put_nowait((chunk, time.time()))

    async def _publish(self) -> None:
        session_var.set(self.session.id)
        while True:
            chunk, arrived = await self._inbound.get()
            self.seq += 1
            msg = AudioMessage(self.session.id, self.seq, chunk, 16_000, arrived)
            await self.bus.publish(Topic.AUDIO_IN, self.session.id, msg.encode())

    async def _watch(self, track: MediaStreamTrack) -> None:
        """The remote track carries no frames (decoded inline); it ends with the connection.

        Should aiortc's internals ever refuse the inline decoder, its frames come here instead.
        """
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, av.AudioFrame):  # an audio track gives audio frames
                self._on_pcm(b"".join(f.to_ndarray().tobytes() for f in resampler.resample(frame)))

    async def _send(self, sender: DirectSender) -> None:
        """Send the agent's voice as the playout track gives it, once the connection is up."""
        session_var.set(self.session.id)
        while not sender.ready:  # noqa: ASYNC110 - ready follows aioice's connection state, which has no event
            await asyncio.sleep(0.02)
        failed = 0
        while True:
            try:
                frame = await self.playout.next_frame()
            except MediaStreamError:
                return
            if isinstance(frame, av.Packet) and frame.pts is not None:
                try:
                    sender.send(bytes(frame), frame.pts, marker=self.playout.spurt_start)
                except Exception:  # noqa: BLE001 - a frame that cannot go is lost, not the call
                    failed += 1
                    if failed in (1, 1_000):
                        log.warning("could not send a frame of the agent's voice (%d so far)", failed,
                                    exc_info=True, extra={"session_id": self.session.id})

    def _on_drained(self, turn: int) -> None:
        payload = encode_json({"type": "playback.done", "session_id": self.session.id, "turn": turn})
        self._spawn(self.bus.publish(Topic.CONTROL, self.session.id, payload))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

