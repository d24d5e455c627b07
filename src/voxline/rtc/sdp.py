"""Reading the caller's SDP offer: cheap checks before aiortc sees it, and the codec in use."""

from __future__ import annotations

import ipaddress

MAX_SDP_LINE = 4096  # the longest real lines (fingerprints, candidates) are a few hundred characters
MAX_M_LINES = 16  # one audio m-line is all we use; browsers bundle a handful at most


class SdpError(ValueError):
    """The offer cannot be used (does not parse, or has no audio)."""


def check_offer(sdp: str) -> None:
    """Cheap checks before aiortc sees the offer, so bad input is a 400 with a reason.

    Size is capped before this by the HTTP body limit (`max_body_bytes`: 413).
    """
    if not sdp.lstrip().startswith("v=0"):
        raise SdpError("SDP must start with v=0")
    lines = sdp.splitlines()
    if any(len(line) > MAX_SDP_LINE for line in lines):
        raise SdpError(f"the offer has a line longer than {MAX_SDP_LINE} characters")
    if sum(line.startswith("m=") for line in lines) > MAX_M_LINES:
        raise SdpError(f"the offer has more than {MAX_M_LINES} m-lines")
    if "\x00" in sdp:
        raise SdpError("the offer contains a NUL character")
    if any(line.startswith("m=application") for line in lines):
        raise SdpError("data channels are not supported: offer audio only (events come over the WebSocket)")
    if not any(line.startswith("m=audio ") for line in lines):
        raise SdpError("the offer has no audio m-line")
    if not any(line.startswith(("a=ice-ufrag:", "a=ice-pwd:")) for line in lines):
        raise SdpError("the offer has no ICE credentials")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise SdpError("the offer has no DTLS fingerprint")


def first_audio_codec(sdp: str) -> str | None:
    """The name of the first codec of the first audio m-line (the one a sender uses), lower case."""
    payload: str | None = None
    for line in sdp.splitlines():
        if payload is None and line.startswith("m=audio "):
            parts = line.split()
            if len(parts) < 4:
                return None
            payload = parts[3]
        elif payload is not None and line.startswith(f"a=rtpmap:{payload} "):
            return line.split(" ", 1)[1].split("/", 1)[0].strip().lower()
    return None


def announce_address(sdp: str, address: str) -> str:
    """The answer with each host candidate also offered on `address` (1:1 NAT, same port).

    Behind a 1:1 NAT (a cloud VM's public IP, a node's external address) the sockets are bound
    to the private address, and packets to public:port arrive on private:port. The copy comes
    right after its original with priority one lower, so a caller on the same network still
    prefers the private address.
    """
    out: list[str] = []
    for line in sdp.split("\r\n"):
        out.append(line)
        parts = line.split()
        if line.startswith("a=candidate:") and len(parts) >= 8 and parts[6:8] == ["typ", "host"] \
                and parts[4] != address:
            parts[0] = f"a=candidate:{parts[0].split(':', 1)[1]}n"  # another foundation: another address
            parts[3] = str(max(int(parts[3]) - 1, 0))
            parts[4] = address
            out.append(" ".join(parts))
    return "\r\n".join(out)


MAX_CANDIDATES = 16  # a browser offers a handful per m-line; every one costs STUN checks we send


def candidate_allowed(address: str, allow_loopback: bool, allow_private: bool, allow_mdns: bool = True) -> bool:
    """Whether the server may send ICE checks to this remote address.

    Never multicast, link-local, unspecified, broadcast or reserved addresses (a caller could
    aim our checks at a LAN); loopback and private ranges only when allowed. mDNS `.local`
    names of browsers pass only with `allow_mdns`: they are resolved before the offer is
    applied (`hooks.resolve_mdns_candidates`) and the address they name is checked here too.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return allow_mdns and address.endswith(".local") and len(address) <= 255
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_link_local or ip.is_unspecified or str(ip) == "255.255.255.255":
        return False
    if ip.is_loopback:
        return allow_loopback
    if ip.is_private:  # includes documentation and other reserved ranges: Python lists them here
        return allow_private and not ip.is_reserved
    return ip.is_global


def filter_candidates(sdp: str, allow_loopback: bool, allow_private: bool,
                      limit: int = MAX_CANDIDATES, allow_mdns: bool = True) -> tuple[str, int]:
    """The offer with refused ICE candidates removed and at most `limit` kept; and how many went.

    A candidate is `a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...`;
    one that does not parse is dropped too.
    """
    kept: list[str] = []
    count = dropped = 0
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            ok = len(parts) >= 8 and parts[5].isdigit() and 0 < int(parts[5]) < 65536 \
                and candidate_allowed(parts[4], allow_loopback, allow_private, allow_mdns)
            if not ok or count >= limit:
                dropped += 1
                continue
            count += 1
        kept.append(line)
    if not dropped:
        return sdp, 0
    return "\r\n".join(kept) + "\r\n", dropped
