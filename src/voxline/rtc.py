"""aiortc settings shared by the server and the client."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection


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
