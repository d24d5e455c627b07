"""aiortc settings shared by the server and the client."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection


def new_peer_connection() -> RTCPeerConnection:
    """A peer connection with no STUN server: the default one stalls 5 s offline."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def parse_port_range(text: str) -> tuple[int, int] | None:
    """`"40000-40999"` -> (40000, 40999); empty -> None (any port). ValueError says what is wrong."""
    if not text.strip():
        return None
    low_s, sep, high_s = text.partition("-")
    try:
        low, high = int(low_s), int(high_s)
    except ValueError:
        raise ValueError(f"rtc_port_range {text!r} is not LOW-HIGH (e.g. 40000-40999)") from None
    if not sep or not 1024 <= low <= high <= 65535:
        raise ValueError(f"rtc_port_range {text!r}: want 1024 <= LOW <= HIGH <= 65535")
    return low, high
