"""Every place voxline reaches into aiortc's or aioice's private objects, in one module.

aiortc has no public setting for these; each was measured to matter (see the docstrings).
Each hook checks that the internals are what it expects and changes nothing otherwise, so
an aiortc upgrade falls back to aiortc's own path rather than breaking a call.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import aioice.ice
from aiortc import RTCPeerConnection

from voxline.rtc.inline import InlineDecoderQueue
from voxline.rtc.receive import DirectReceiver, ReceiveLimits

log = logging.getLogger(__name__)
_all_host_addresses = aioice.ice.get_host_addresses


def audio_transceiver(pc: RTCPeerConnection) -> Any:
    """The connection's (first) audio transceiver, or None."""
    return next((t for t in pc.getTransceivers() if t.kind == "audio"), None)


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Offer ICE host candidates on these local addresses only (all interfaces when empty).

    aioice offers every interface's address and never loopback; a server that should only be
    reached on one interface (or tests that must stay on 127.0.0.1) names its addresses here.

    This is voxline's one process-wide patch: it replaces `aioice.ice.get_host_addresses`,
    which every aioice connection calls when it gathers candidates, and so applies to every
    peer connection of this process (servers, test and benchmark callers, raw connections in
    tests alike). aioice 0.13 and aiortc 1.16 take no per-connection address list; a
    per-connection version would wrap each connection's `get_component_candidates` at every
    place a connection is made, and could be missed at one. Every voxline process has one
    setting for this (`rtc_host_addresses`), so one process-wide value is what is meant.
    Remove when aioice's Connection takes host addresses.
    """
    chosen = [a.strip() for a in addresses if a.strip()]
    if not chosen:
        aioice.ice.get_host_addresses = _all_host_addresses
        return

    def only_these(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]

    aioice.ice.get_host_addresses = only_these


def offered_host_addresses() -> list[str]:
    """The local addresses this process offers as ICE host candidates (see `use_host_addresses`)."""
    return list(aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True))


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
                   rate: int = 16_000, limits: ReceiveLimits | None = None) -> DirectReceiver | None:
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
    direct = DirectReceiver(dtls, receiver, pts, on_pcm, rate, connection.data_received, limits)
    connection.data_received = direct.datagram
    direct._connection = connection

    @pc.on("connectionstatechange")
    def _closed() -> None:
        if pc.connectionState in ("closed", "failed"):
            direct.detach()

    return direct


def use_port_range(pc: RTCPeerConnection, low: int, high: int) -> bool:
    """Bind this connection's ICE host sockets to a port in [low, high] instead of any port.

    A firewall or a Kubernetes node then needs only that UDP range open. aioice binds port 0
    with no setting for it, so this wraps its connection's `get_component_candidates`: host
    sockets are bound here (trying ports from a random start in the range), and aioice's own
    method runs with no addresses for the rest (TURN; no STUN: the server uses none). Call
    after the remote description made the transceivers and before `setLocalDescription`.
    Returns False (nothing changed) if aiortc's internals are not what this expects.
    Remove when aioice takes a port range (0.13 has none).
    """
    from aioice.candidate import Candidate, candidate_foundation, candidate_priority

    aioice_ice = aioice.ice
    transceiver = audio_transceiver(pc)
    ice_transport = getattr(getattr(getattr(transceiver, "receiver", None), "transport", None), "transport", None)
    connection = getattr(ice_transport, "_connection", None)
    original = getattr(connection, "get_component_candidates", None)
    if connection is None or original is None or not hasattr(aioice_ice, "StunProtocol") \
            or not isinstance(getattr(connection, "_protocols", None), list):
        return False

    async def ranged(component: int, addresses: list[str], timeout: int = 5) -> list[Any]:
        loop = asyncio.get_running_loop()
        candidates: list[Any] = []
        span = high - low + 1
        for address in addresses:
            start = random.randrange(span)
            for i in range(span):
                port = low + (start + i) % span
                try:
                    _, protocol = await loop.create_datagram_endpoint(
                        lambda: aioice_ice.StunProtocol(connection), local_addr=(address, port))
                    break
                except OSError:
                    continue
            else:
                log.warning("no free UDP port in %d-%d on %s: no host candidate there", low, high, address)
                continue
            host, bound = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host), component=component,
                transport="udp", priority=candidate_priority(component, "host"),
                host=host, port=bound, type="host")
            connection._protocols.append(protocol)
            candidates.append(protocol.local_candidate)
        return candidates + list(await original(component, [], timeout))

    connection.get_component_candidates = ranged
    return True


MDNS_TIMEOUT_S = 1.0  # per name, all names at once: what aioice itself waits


async def resolve_mdns_candidates(sdp: str, allowed: Callable[[str], bool],
                                  timeout_s: float = MDNS_TIMEOUT_S) -> tuple[str, int]:
    """The offer with each mDNS (`.local`) candidate's name replaced by the address it resolves
    to, and those whose address is not `allowed` (or that do not resolve) removed; and how many went.

    aioice would resolve the names itself and check whatever they name, so a caller (or anyone
    answering mDNS on the server's LAN) could aim our ICE checks at a multicast, link-local or
    otherwise refused address. Resolving here, once, lets the same filter as every other
    candidate judge the address that is then used. Uses aioice's shared mDNS socket (its
    module-level helpers, as `Connection.add_remote_candidate` does). Remove when aioice lets a
    caller filter resolved candidates (0.13 cannot).
    """
    names = {parts[4] for line in sdp.splitlines()
             if line.startswith("a=candidate:") and len(parts := line.split()) >= 8 and parts[4].endswith(".local")}
    if not names:
        return sdp, 0
    get_protocol = getattr(aioice.ice, "get_or_create_mdns_protocol", None)
    unref = getattr(aioice.ice, "unref_mdns_protocol", None)
    resolved: dict[str, str | None] = dict.fromkeys(names)
    subscriber = object()
    if get_protocol is not None and unref is not None:
        try:
            protocol = await get_protocol(subscriber)
            found = await asyncio.gather(*(protocol.resolve(n, timeout=timeout_s) for n in sorted(names)),
                                         return_exceptions=True)
            resolved = {n: a if isinstance(a, str) else None for n, a in zip(sorted(names), found, strict=True)}
        except OSError as exc:  # no multicast on this host: nothing resolves
            log.warning("mDNS candidates not resolved: %s", exc)
        finally:
            await unref(subscriber)
    else:
        log.warning("aioice internals changed: mDNS candidates refused")
    kept: list[str] = []
    dropped = 0
    for line in sdp.splitlines():
        parts = line.split()
        if line.startswith("a=candidate:") and len(parts) >= 8 and parts[4] in resolved:
            address = resolved[parts[4]]
            if address is None or not allowed(address):
                dropped += 1
                continue
            parts[4] = address
            line = " ".join(parts)
        kept.append(line)
    return "\r\n".join(kept) + "\r\n", dropped


FAST_PATHS = ("receive_direct", "decode_inline", "send_direct")


async def probe_fast_paths() -> dict[str, str]:
    """{path: why not} for each fast path the installed aiortc/aioice cannot take; {} when all can.

    Run once when a media process starts: an offer and an answer between two connections in
    this process (no media, no ICE checks), with each hook installed as a call would install
    it. A call whose hook does not install still works, on aiortc's own path; this says so once,
    at start-up, rather than in lost capacity later.
    """
    from aiortc.mediastreams import AudioStreamTrack

    from voxline.rtc.connection import new_peer_connection
    from voxline.rtc.send import DirectSender

    failed: dict[str, str] = {}
    offerer, answerer = new_peer_connection(), new_peer_connection()
    try:
        offerer.addTransceiver("audio", direction="sendrecv")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        if not decode_inline(answerer, _ignore_pcm):
            failed["decode_inline"] = "aiortc's audio receiver has no decoder queue to replace"
        if receive_direct(answerer, _ignore_pcm) is None:
            failed["receive_direct"] = "no DTLS transport with an aioice connection and SRTP session on the receiver"
        answerer.addTrack(AudioStreamTrack())
        await answerer.setLocalDescription(await answerer.createAnswer())
        connection = getattr(getattr(getattr(audio_transceiver(answerer), "sender", None), "transport", None),
                             "transport", None)
        if DirectSender.for_connection(answerer) is None:
            failed["send_direct"] = "no Opus sender with an SSRC and an SRTP session"
        elif not hasattr(getattr(connection, "_connection", None), "_nominated"):
            failed["send_direct"] = "aioice's connection keeps no nominated pair (_nominated)"
    except Exception as exc:  # noqa: BLE001 - any failure here means: do not count on the fast paths
        failed = dict.fromkeys(FAST_PATHS, f"the probe failed: {exc!r}")
    finally:
        await offerer.close()
        await answerer.close()
    return failed


async def check_fast_paths() -> dict[str, str]:
    """Probe the fast paths and log one warning line for each that cannot install (with versions)."""
    import importlib.metadata

    failed = await probe_fast_paths()
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("aiortc", "aioice", "pylibsrtp", "av"))
    for path, why in failed.items():
        log.warning("fast path %s unavailable: %s; calls take aiortc's own path (%s; tested versions are in "
                    "constraints.txt)", path, why, versions)
    if not failed:
        log.info("fast paths in use: %s (%s)", ", ".join(FAST_PATHS), versions)
    return failed


def _ignore_pcm(pcm: bytes, rtp_time: int) -> None:
    return None
