"""mDNS (`.local`) ICE candidates (#14.1), against the real media server on loopback: the
test answers mDNS on the host as a browser's machine (or a hostile LAN neighbour) would. A
name that resolves to an allowed address carries a call; one that names a link-local,
multicast or unspecified address, or does not resolve, is refused and counted, and never
reaches aioice; with `rtc_resolve_mdns=false` every name is refused outright."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest
from aioice import mdns
from aiortc import RTCSessionDescription

from metrics_text import parse_metrics
from tests.integration.test_recovery import wait_for
from voxline.rtc.connection import new_peer_connection

CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host.*)$", re.M)


def _remote_hosts(media: Any, sid: str) -> set[str]:
    """The remote candidates the server's ICE agent holds (aiortc's public API)."""
    peer = media.peers[sid]
    transceiver = next(t for t in peer.pc.getTransceivers() if t.kind == "audio")
    return {c.ip for c in transceiver.receiver.transport.transport.getRemoteCandidates()}


async def _offer(http: aiohttp.ClientSession, url: str, name_for: dict[str, str]) -> tuple[Any, aiohttp.ClientResponse]:
    """A real aiortc offer whose host candidates name `name_for[address]` instead of the address."""
    pc = new_peer_connection()
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = CANDIDATE.sub(lambda m: m.group(1) + name_for.get(m.group(2), m.group(2)) + m.group(3),
                        pc.localDescription.sdp)
    resp = await http.post(f"{url}/whip", data=sdp, headers={"Content-Type": "application/sdp"})
    body = await resp.text()
    if resp.status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    return pc, resp


@pytest.fixture
async def responder() -> Any:
    """An mDNS responder on this host: publishes names, as a caller's machine does."""
    protocol = await mdns.create_mdns_protocol()
    yield protocol
    await protocol.close()


@pytest.mark.parametrize("media_server", [{"max_sessions": 8, "max_sessions_per_client": 8}], indirect=True)
async def test_an_mdns_candidate_is_checked_at_the_address_it_names(media_server, responder) -> None:
    url, media = media_server.url, media_server.media
    good = mdns.create_mdns_hostname()
    await responder.publish(good, "127.0.0.1")  # loopback: allowed, as the server offers loopback itself
    async with aiohttp.ClientSession() as http:
        pc, resp = await _offer(http, url, {"127.0.0.1": good})
        assert resp.status == 201, await resp.text()
        sid = resp.headers["X-Session-ID"]
        await wait_for(lambda: pc.connectionState == "connected", "the call over a resolved mDNS name did not connect")
        assert _remote_hosts(media, sid) <= {"127.0.0.1"} and media.peers[sid].candidates_dropped == 0
        await pc.close()

        for address in ("169.254.10.20", "224.0.0.251", "0.0.0.0"):  # link-local, multicast, unspecified
            hostile = mdns.create_mdns_hostname()
            await responder.publish(hostile, address)
            missing = mdns.create_mdns_hostname()  # answered by nobody
            pc, resp = await _offer(http, url, {"127.0.0.1": hostile})
            assert resp.status == 201, await resp.text()
            sid = resp.headers["X-Session-ID"]
            assert address not in _remote_hosts(media, sid) and not any(h.endswith(".local") for h in _remote_hosts(media, sid))
            assert media.peers[sid].candidates_dropped >= 1, address
            pc2, resp2 = await _offer(http, url, {"127.0.0.1": missing})
            assert resp2.status == 201
            assert media.peers[resp2.headers["X-Session-ID"]].candidates_dropped >= 1
            for p in (pc, pc2):
                await p.close()
        async with http.get(f"{url}/metrics") as r:
            refused = parse_metrics(await r.text())["voxline_ice_candidates_refused_total"]
        assert refused >= 6


@pytest.mark.parametrize("media_server", [{"rtc_resolve_mdns": False}], indirect=True)
async def test_mdns_candidates_are_refused_when_resolution_is_off(media_server, responder) -> None:
    name = mdns.create_mdns_hostname()
    await responder.publish(name, "127.0.0.1")  # it would resolve, and to an allowed address
    async with aiohttp.ClientSession() as http:
        pc, resp = await _offer(http, media_server.url, {"127.0.0.1": name})
        assert resp.status == 201, await resp.text()
        sid = resp.headers["X-Session-ID"]
        assert media_server.media.peers[sid].candidates_dropped >= 1
        assert not _remote_hosts(media_server.media, sid)  # nothing to check: the call cannot connect
        await asyncio.sleep(0.5)
        assert pc.connectionState != "connected"
        await pc.close()
