"""NAT traversal against a real TURN server (coturn on loopback): relay-only callers and port ranges."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from tests.integration.conftest import Running, start_server, stop_server
from voxline.bench.system import free_port
from voxline.config import Settings

SECRET = "test-turn-secret"


def _free_udp_range(width: int) -> int:
    """The start of `width` consecutive UDP ports that are free on 127.0.0.1 right now."""
    for base in range(41000, 60000, 97):
        socks = []
        try:
            for port in range(base, base + width):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", port))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port range")


@pytest.fixture
def coturn(tmp_path) -> Iterator[tuple[int, range]]:  # type: ignore[no-untyped-def]
    """coturn with the REST-API shared secret, relaying on loopback; yields (port, relay ports)."""
    binary = shutil.which("turnserver")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("coturn (turnserver) is not installed: scripts/setup.sh --test installs it")
        pytest.skip("coturn (turnserver) is not installed")
    port = free_port()
    relay = _free_udp_range(40)
    log = (tmp_path / "coturn.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-n", "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--listening-port", str(port),
         "--min-port", str(relay), "--max-port", str(relay + 39), "--use-auth-secret",
         "--static-auth-secret", SECRET, "--realm", "voxline.test", "--allow-loopback-peers", "--no-tls",
         "--no-dtls", "--no-cli", "--no-rfc5780", "--no-stun-backward-compatibility", "--log-file", "stdout",
         "--simple-log", "--pidfile", str(tmp_path / "turn.pid")],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:  # coturn listens on TCP too: ready once that port answers
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError((tmp_path / "coturn.log").read_text()[-2000:]) from None
            time.sleep(0.05)
    yield port, range(relay, relay + 40)
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
async def nat_server(coturn: tuple[int, range]) -> AsyncIterator[tuple[Running, range]]:
    low = _free_udp_range(20)
    settings = Settings(max_sessions=3, session_create_rate_per_min=1000, rtc_port_range=f"{low}-{low + 19}",
                        rtc_announced_address="127.0.0.2",  # loopback too: no packet leaves this machine
                        ice_servers=(f"turn:127.0.0.1:{coturn[0]}",), turn_secret=SECRET, turn_ttl_s=300)
    running, cleanup = await start_server(settings, None)
    yield running, range(low, low + 20)
    await stop_server(cleanup)


def _candidates(sdp: str) -> list[list[str]]:
    return [line.split() for line in sdp.splitlines() if line.startswith("a=candidate:")]


async def test_a_relay_only_caller_completes_a_call_through_turn_on_the_configured_ports(
        nat_server: tuple[Running, range], coturn: tuple[int, range]) -> None:
    server, ports = nat_server
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/ice-servers") as resp:
            assert resp.status == 200
            (turn,) = (await resp.json())["iceServers"]
        pc = RTCPeerConnection(RTCConfiguration(
            iceServers=[RTCIceServer(urls=turn["urls"], username=turn["username"], credential=turn["credential"])],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY))
        pc.addTrack(AudioStreamTrack())  # aiortc's silent source: Opus packets all the same
        await pc.setLocalDescription(await pc.createOffer())
        offered = _candidates(pc.localDescription.sdp)
        assert offered and all(c[7] == "relay" for c in offered), offered  # the caller offers nothing else
        async with http.post(f"{server.url}/whip", data=pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp"}) as resp:
            assert resp.status == 201, await resp.text()
            answer, sid = await resp.text(), resp.headers["X-Session-ID"]
        host = [c for c in _candidates(answer) if c[7] == "host"]
        assert {c[4] for c in host} == {"127.0.0.1", "127.0.0.2"}  # bound address + announced copy
        assert all(int(c[5]) in ports for c in host), host  # only the configured UDP range
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        peer = server.media.peers[sid]
        deadline = time.monotonic() + 20
        while peer.frames_in < 25:  # half a second of the caller's audio arrived via the relay
            assert time.monotonic() < deadline, f"no audio through TURN: {pc.connectionState}, {peer.frames_in}"
            await asyncio.sleep(0.05)
        pair = peer.pc.getTransceivers()[0].receiver.transport.transport._connection._nominated[1]
        assert pair.remote_candidate.type == "relay" and pair.remote_candidate.port in coturn[1]
        assert pair.local_candidate.port in ports
        await pc.close()


async def test_turn_credentials_expire(nat_server: tuple[Running, range]) -> None:
    server, _ = nat_server
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/ice-servers") as resp:
        (turn,) = (await resp.json())["iceServers"]
    expiry = int(turn["username"].split(":")[0])
    assert time.time() < expiry <= time.time() + 300 + 1
