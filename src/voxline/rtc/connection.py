"""aiortc settings shared by the server and the client."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection


def new_peer_connection() -> RTCPeerConnection:
    """A peer connection with no STUN server: the default one stalls 5 s offline."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))

