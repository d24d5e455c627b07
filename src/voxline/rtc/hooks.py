"""Every place voxline reaches into aiortc's or aioice's private objects, in one module.

aiortc has no public setting for these; each was measured to matter (see the docstrings).
Each hook checks that the internals are what it expects and changes nothing otherwise, so
an aiortc upgrade falls back to aiortc's own path rather than breaking a call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import aioice.ice
from aiortc import RTCPeerConnection

from voxline.rtc.inline import InlineDecoderQueue
from voxline.rtc.receive import DirectReceiver

_all_host_addresses = aioice.ice.get_host_addresses


def audio_transceiver(pc: RTCPeerConnection) -> Any:
    """The connection's (first) audio transceiver, or None."""
    return next((t for t in pc.getTransceivers() if t.kind == "audio"), None)


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Offer ICE host candidates on these local addresses only (all interfaces when empty).

    aioice offers every interface's address and never loopback; a server that should only be
    reached on one interface (or tests that must stay on 127.0.0.1) names its addresses here.
    It applies to every peer connection of this process.
    """
    chosen = [a.strip() for a in addresses if a.strip()]
    if not chosen:
        aioice.ice.get_host_addresses = _all_host_addresses
        return

    def only_these(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]

    aioice.ice.get_host_addresses = only_these


def tune_jitter_buffers(pc: RTCPeerConnection, prefetch: int) -> None:
    """aiortc prefetches 4 packets (80 ms) before it decodes audio; fewer cut that delay.

    The server takes `prefetch` from `Settings.rtc_jitter_prefetch` (default 1; only used when
    the direct receive path is not); the test and benchmark caller keeps 2, as a browser would.

    There is no public setting, so this replaces each audio receiver's buffer before any RTP
    arrives; if aiortc changes its internals, the default buffer simply stays.
    """
    from aiortc.jitterbuffer import JitterBuffer

    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if transceiver.kind == "audio" and hasattr(receiver, "_RTCRtpReceiver__jitter_buffer"):
            receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(capacity=16, prefetch=prefetch)


def decode_inline(pc: RTCPeerConnection, on_pcm: Callable[[bytes, int], None], rate: int = 16_000) -> bool:
    """Decode this connection's received audio in the loop; call `on_pcm(pcm, rtp_time)` per frame.

    `pcm` is mono s16 at `rate`; `rtp_time` is the frame's media time in 48 kHz units from 0.
    Call after the remote (server) or local (client) description has created the audio
    transceiver and before the connection starts. The remote track then carries no frames; it
    only ends when the connection does. Returns False (and changes nothing) if aiortc's
    internals are not what this expects.
    """
    hooked = False
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if transceiver.kind == "audio" and hasattr(receiver, "_RTCRtpReceiver__decoder_queue") \
                and getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is None:
            receiver._RTCRtpReceiver__decoder_queue = InlineDecoderQueue(on_pcm, rate)
            hooked = True
    return hooked


def receive_direct(pc: RTCPeerConnection, on_pcm: Callable[[bytes, int], None],
                   rate: int = 16_000) -> DirectReceiver | None:
    """Take this connection's received Opus audio off the socket; None if it cannot be done.

    Call once the remote (server) or local (client) description made the audio transceiver
    and negotiated its codecs. Returns None and changes nothing if Opus was not negotiated or
    aiortc's internals are not what this expects; the usual path then carries the audio.
    """
    transceiver = audio_transceiver(pc)
    if transceiver is None:
        return None
    receiver = transceiver.receiver
    dtls = getattr(receiver, "transport", None)
    connection = getattr(getattr(dtls, "transport", None), "_connection", None)
    pts = {c.payloadType for c in getattr(transceiver, "_codecs", []) if c.mimeType.lower() == "audio/opus"}
    if not pts or connection is None or not hasattr(dtls, "_rx_srtp") \
            or not callable(getattr(connection, "data_received", None)):
        return None
    direct = DirectReceiver(dtls, receiver, pts, on_pcm, rate, connection.data_received)
    connection.data_received = direct.datagram
    direct._connection = connection

    @pc.on("connectionstatechange")
    def _closed() -> None:
        if pc.connectionState in ("closed", "failed"):
            direct.detach()

    return direct
