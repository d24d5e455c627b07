"""Reading the caller's SDP offer: cheap checks before aiortc sees it, and the codec in use."""

from __future__ import annotations

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
