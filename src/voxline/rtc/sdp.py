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


def _opus_payload(lines: list[str]) -> str | None:
    """The payload type of Opus on the first audio m-line, if it has Opus."""
    in_audio = False
    for line in lines:
        if line.startswith("m="):
            if in_audio:
                return None
            in_audio = line.startswith("m=audio ")
        elif in_audio and line.startswith("a=rtpmap:") and " opus/" in line.lower():
            return line[len("a=rtpmap:"):].split(" ", 1)[0]
    return None


def opus_fmtp(sdp: str) -> dict[str, str]:
    """The Opus format parameters (RFC 7587) of the first audio m-line: `{"maxplaybackrate": "16000", ...}`."""
    lines = sdp.splitlines()
    payload = _opus_payload(lines)
    line = next((x for x in lines if payload is not None and x.startswith(f"a=fmtp:{payload} ")), None)
    if line is None:
        return {}
    pairs = (p.strip().partition("=") for p in line.split(" ", 1)[1].split(";"))
    return {k.strip().lower(): v.strip() for k, _, v in pairs if k.strip()}


def with_opus_fmtp(sdp: str, params: dict[str, int]) -> str:
    """`sdp` (an answer) with `params` added to the first audio m-line's Opus `a=fmtp` line.

    What a receiver puts there the caller's encoder follows (RFC 7587; browsers do): with
    `maxplaybackrate=16000` it codes wideband only, spending every bit below 8 kHz, which is
    all Whisper hears; `maxaveragebitrate` keeps its bitrate (a browser would otherwise drop to
    its wideband default of 20 kbit/s). aiortc's answer carries no Opus fmtp at all.
    """
    sep = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(sep)
    payload = _opus_payload(lines)
    if payload is None or not params:
        return sdp
    fmtp = f"a=fmtp:{payload} "
    at = next((i for i, x in enumerate(lines) if x.startswith(fmtp)), None)
    current = opus_fmtp(sdp) if at is not None else {}
    merged = {**current, **{k: str(v) for k, v in params.items()}}
    line = fmtp + ";".join(f"{k}={v}" for k, v in merged.items())
    if at is not None:
        lines[at] = line
    else:
        rtpmap = next(i for i, x in enumerate(lines) if x.startswith(f"a=rtpmap:{payload} "))
        lines.insert(rtpmap + 1, line)
    return sep.join(lines)
