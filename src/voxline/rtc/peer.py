"""One caller's WebRTC peer connection: caller audio in -> bus, agent audio from the bus -> caller.

Inbound Opus is taken off the socket and decoded in the event loop straight to 16 kHz mono
(`voxline.rtc.receive`, `voxline.audio.opus`), cut into 20 ms chunks, each stamped with a sequence
number and its arrival time, and published on `audio.in` keyed by session ID, but only while
the session is listening. The agent's voice is encoded to Opus in the loop too, by the
playout track, and sent by a `DirectSender`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import av
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from voxline.audio.opus import OpusEncoder
from voxline.bus.base import Bus
from voxline.bus.codec import AudioMessage
from voxline.bus.messages import PlaybackDone, Played, publish
from voxline.bus.topics import Topic
from voxline.config import Settings
from voxline.logs import session_var
from voxline.rtc.connection import new_peer_connection
from voxline.rtc.hooks import (
    decode_inline,
    offered_host_addresses,
    receive_direct,
    resolve_mdns_candidates,
    tune_jitter_buffers,
    use_port_range,
)
from voxline.rtc.playout import PlayoutTrack
from voxline.rtc.receive import DirectReceiver, ReceiveLimits
from voxline.rtc.sdp import (
    MAX_CANDIDATES,
    SdpError,
    announce_address,
    candidate_allowed,
    check_offer,
    filter_candidates,
    first_audio_codec,
    with_opus_fmtp,
)
from voxline.rtc.send import DirectSender
from voxline.sessions.registry import Session

log = logging.getLogger(__name__)
CHUNK_BYTES = 640  # 20 ms at 16 kHz s16 mono
MAX_INBOUND = 250  # chunks (5 s) waiting for the bus; beyond this the oldest go (a stalled bus)


@dataclass(frozen=True)
class PeerLimits:
    """What one caller's connection may cost: candidates we check, packets we take, close time."""

    receive: ReceiveLimits = field(default_factory=ReceiveLimits)
    allow_loopback: bool = False  # remote candidates on loopback: only when we offer loopback ourselves
    allow_private: bool = True  # remote candidates in private ranges (LAN callers, mDNS-resolved browsers)
    max_candidates: int = MAX_CANDIDATES
    close_timeout_s: float = 5.0
    resolve_mdns: bool = True  # mDNS candidates: resolved and their address filtered; False: refused

    def allowed(self, address: str) -> bool:
        """An IP address we may send ICE checks to (what an mDNS name resolved to)."""
        return candidate_allowed(address, self.allow_loopback, self.allow_private, allow_mdns=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> PeerLimits:
        ours = [a.split("%")[0] for a in offered_host_addresses()]
        loopback = any(ipaddress.ip_address(a).is_loopback for a in ours if _is_ip(a))
        return cls(ReceiveLimits(settings.rtc_max_packets_per_s, settings.rtc_max_bytes_per_s,
                                 settings.rtc_max_pre_dtls_datagrams),
                   allow_loopback=loopback, allow_private=settings.rtc_allow_private_candidates,
                   max_candidates=settings.rtc_max_candidates, close_timeout_s=settings.rtc_close_timeout_s,
                   resolve_mdns=settings.rtc_resolve_mdns)


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


class MediaPeer:
    def __init__(self, session: Session, bus: Bus, on_closed: Callable[[str, str], Awaitable[None]],
                 jitter_prefetch: int, send_silence: bool = False,
                 port_range: tuple[int, int] | None = None, announced_address: str = "",
                 limits: PeerLimits | None = None, opus_fmtp: dict[str, int] | None = None) -> None:
        self.session = session
        self.opus_fmtp = opus_fmtp or {}  # asked of the caller's Opus encoder in the answer (Settings.rtc_opus_*)
        self.limits = limits or PeerLimits()
        self.candidates_dropped = 0
        self.bus = bus
        self.on_closed = on_closed
        self.jitter_prefetch = jitter_prefetch  # Settings.rtc_jitter_prefetch: the one default is there
        self.port_range = port_range
        self.announced_address = announced_address
        self.pc = new_peer_connection()
        self.playout = PlayoutTrack(on_drained=self._on_drained, send_silence=send_silence, on_played=self._on_played)
        self.seq = 0
        self.frames_in = 0
        self.dropped_in = 0  # caller audio dropped because the bus did not take it in time
        self.direct: DirectReceiver | None = None
        self.inline = False  # received audio that is not taken directly is decoded in the loop
        self._pending = bytearray()
        self._inbound: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.closed = asyncio.Event()  # set once close() has run: the call is over here

    async def answer(self, offer_sdp: str) -> str:
        check_offer(offer_sdp)
        limits = self.limits
        offer_sdp, self.candidates_dropped = filter_candidates(offer_sdp, limits.allow_loopback, limits.allow_private,
                                                               limits.max_candidates, limits.resolve_mdns)
        if limits.resolve_mdns:  # names become the addresses they resolve to, checked like any other
            offer_sdp, refused = await resolve_mdns_candidates(offer_sdp, limits.allowed)
            self.candidates_dropped += refused
        if self.candidates_dropped:
            log.info("refused %d ICE candidates of the offer (not allowed, or over %d)", self.candidates_dropped,
                     limits.max_candidates, extra={"session_id": self.session.id})
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
        self.direct = receive_direct(pc, self._on_pcm, limits=limits.receive)  # Opus, straight off the socket
        self.inline = decode_inline(pc, self._on_pcm)
        if not self.inline:  # anything else (PCMU), through aiortc's receiver
            log.warning("aiortc internals changed: audio decoded by its own thread",
                        extra={"session_id": self.session.id})
        self._spawn(self._publish())
        pc.addTrack(self.playout)  # reuses the offered audio m-line: sendrecv when offered
        self._refuse_other_media()
        await pc.setLocalDescription(await pc.createAnswer())
        if first_audio_codec(pc.localDescription.sdp) == "opus":
            self.playout.encoder = OpusEncoder()
            sender = DirectSender.for_connection(pc)
            if sender is not None:  # the agent's voice leaves straight from here, not via aiortc's sender
                self.playout.direct = True
                self._spawn(self._send(sender))
        answer: str = with_opus_fmtp(pc.localDescription.sdp, self.opus_fmtp)
        return announce_address(answer, self.announced_address) if self.announced_address else answer

    def _refuse_other_media(self) -> None:
        """Every m-line but the first audio one is answered inactive: nothing received or decoded.

        aiortc would otherwise decode an offered video track into a queue nobody reads (a 720p
        sender grew a server by 822 MB in 20 s). Data channels are refused earlier (400).
        """
        first = True
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "audio" and first:
                first = False
                continue
            transceiver.direction = "inactive"

    async def close(self) -> None:
        """Stop the call's tasks and the connection, within `close_timeout_s` whatever aiortc does."""
        if self._closed:
            return
        self._closed = True
        self.playout.stop()
        for task in list(self._tasks):
            task.cancel()
        try:
            async with asyncio.timeout(self.limits.close_timeout_s):
                await self.pc.close()
        except Exception:  # noqa: BLE001 - a hung or failing close must not hang cleanup
            log.warning("peer connection close did not finish cleanly", exc_info=True,
                        extra={"session_id": self.session.id})
        try:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=self.limits.close_timeout_s)
        finally:
            self.closed.set()

    def paths(self) -> dict[str, str]:
        """Which path this call's audio takes each way, for /metrics (see voxline.rtc.hooks)."""
        receive = "direct" if self.direct is not None else "inline" if self.inline else "aiortc"
        return {"receive": receive, "send": "direct" if self.playout.direct else "aiortc"}

    def counts(self) -> dict[str, int]:
        """This call's media counters (summed over calls into /metrics' counters)."""
        direct = self.direct
        return {"frames_late": self.playout.frames_late, "audio_dropped": self.dropped_in,
                "rtp_concealed": direct.concealed if direct else 0, "rtp_late": direct.late if direct else 0,
                "rtp_errors": direct.errors if direct else 0,
                "rtp_limited": (direct.limited + direct.pre_dtls_dropped + direct.audio_dropped) if direct else 0,
                "rtp_ssrc_dropped": direct.ssrc_dropped if direct else 0,
                "rtp_empty": direct.empty if direct else 0,
                "candidates_refused": self.candidates_dropped}

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
        self._spawn(publish(self.bus, PlaybackDone(session_id=self.session.id, turn=turn)))

    def _on_played(self, turn: int, position_s: float, at: float, playing: bool) -> None:
        """The playout's send timeline, for the agent's echo canceller (`Played`)."""
        self._spawn(publish(self.bus, Played(session_id=self.session.id, turn=turn, position_s=round(position_s, 5),
                                             at=round(at, 5), playing=playing)))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

