"""aiortc settings shared by the server and the client."""

from __future__ import annotations

from typing import Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection

_all_host_addresses = aioice.ice.get_host_addresses


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


def new_peer_connection() -> RTCPeerConnection:
    """A peer connection with no STUN server: the default one stalls 5 s offline."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def tune_jitter_buffers(pc: RTCPeerConnection, prefetch: int) -> None:
    """aiortc prefetches 4 packets (80 ms) before it decodes audio; 2 halves that delay.

    There is no public setting, so this replaces each audio receiver's buffer before any RTP
    arrives; if aiortc changes its internals, the default buffer simply stays.
    """
    from aiortc.jitterbuffer import JitterBuffer

    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if transceiver.kind == "audio" and hasattr(receiver, "_RTCRtpReceiver__jitter_buffer"):
            receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(capacity=16, prefetch=prefetch)
