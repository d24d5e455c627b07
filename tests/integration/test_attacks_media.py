"""Hostile callers against a real `voxline media` process on loopback: video, SSRC fan-out,
zero-length Opus, floods before DTLS and ICE candidates aimed at other ports.

Each attack is bounded in count and time; the server's RSS is read from /proc.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import VideoStreamTrack

from audio_helpers import tone, until
from metrics_text import parse_metrics
from voxline.audio.opus import encode_frames
from voxline.bench.system import free_port
from voxline.rtc.connection import new_peer_connection
from voxline.rtc.receive import RTP_HEADER
from voxline.rtc.sdp import MAX_CANDIDATES
from voxline.rtc.send import DirectSender

VIDEO_S = 20.0
FLOOD_S = 5.0


class Video720p(VideoStreamTrack):
    """A synthetic 1280x720 camera: a moving gradient (cheap to encode, so it runs at full rate)."""

    image = np.fromfunction(lambda y, x, c: (x + 2 * y + 80 * c) % 256, (720, 1280, 3)).astype(np.uint8)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(np.roll(self.image, pts // 3000 * 8, axis=1), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _spawn(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VOXLINE_PORT": str(port), "VOXLINE_SESSION_STORE": "memory",
           "VOXLINE_DATA_DIR": str(tmp_path), "VOXLINE_LOG_LEVEL": "WARNING",
           "VOXLINE_RTC_HOST_ADDRESSES": "127.0.0.1", "VOXLINE_SESSION_CREATE_RATE_PER_MIN": "1000"}
    return subprocess.Popen([sys.executable, "-m", "voxline", "media"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


@pytest.fixture
async def media_proc(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """`voxline media` alone (memory bus, memory store) on a free loopback port."""
    port = free_port()
    proc = _spawn(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else "exited"
                try:
                    async with http.get(f"{url}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the media server did not start"
                await asyncio.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _metrics(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(f"{url}/metrics") as resp:
        return parse_metrics(await resp.text())


async def _offer(http: aiohttp.ClientSession, url: str, sdp: str) -> aiohttp.ClientResponse:
    resp = await http.post(f"{url}/whip", data=sdp, headers={"Content-Type": "application/sdp"})
    await resp.read()
    return resp


async def test_video_caller_ssrc_fan_out_and_empty_opus_hold_memory_and_are_counted(media_proc) -> None:
    """720p video offered and sent for 20 s (refused: a=inactive), then 5 s of a second SSRC
    every packet and zero-length Opus on the caller's own stream: RSS within 60 MB, drops counted."""
    url, pid = media_proc
    pc = new_peer_connection()
    pc.addTransceiver("audio", direction="sendrecv")  # its packets are ours to make (DirectSender)
    pc.addTrack(Video720p())
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        resp = await _offer(http, url, pc.localDescription.sdp)
        assert resp.status == 201, await resp.text()
        answer = await resp.text()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        assert await until(lambda: pc.connectionState == "connected", 15)
        sender = DirectSender.for_connection(pc)
        assert sender is not None and await until(lambda: sender.ready, 5)
        await asyncio.sleep(1.0)
        before = _rss_mb(pid)
        await asyncio.sleep(VIDEO_S)  # the caller's 720p camera runs (were it answered, it would be decoded)
        video_grown = _rss_mb(pid) - before
        srtp, pair = sender._route()  # type: ignore[misc]
        voice = encode_frames(tone(seconds=1.0))
        start, sent, k = time.monotonic(), 0, 0
        while time.monotonic() - start < FLOOD_S:
            k += 1
            sender.send(voice[k % len(voice)], k * 960 * 10)  # the caller's real audio, 50 packets a second
            for _ in range(9):  # and ~450 a second of each kind of junk
                k += 1
                junk = RTP_HEADER.pack(0x80, sender.payload_type, k & 0xFFFF, k * 960, random.getrandbits(32))
                pair.protocol.transport.sendto(srtp.protect(junk + os.urandom(1100)), pair.remote_addr)  # new SSRC
                sender.send(b"", k * 960)  # zero-length Opus on the caller's own stream
                sent += 2
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        grown = _rss_mb(pid) - before
        counts = await _metrics(http, url)
        state = await (await http.get(f"{url}/sessions/{resp.headers['X-Session-ID']}",
                                      headers={"X-Session-Token": resp.headers["X-Session-Token"]})).json()
    await pc.close()
    assert video_grown < 60, f"server RSS grew {video_grown:.0f} MB in {VIDEO_S:.0f} s of a 720p caller"
    assert grown < 60, f"server RSS grew {grown:.0f} MB during {VIDEO_S + FLOOD_S:.0f} s of a hostile caller"
    video = answer[answer.index("m=video"):]
    assert "a=inactive" in video.split("m=", 2)[1]  # refused: nothing received or decoded
    refused = counts["voxline_inbound_rtp_limited_total"] + counts["voxline_inbound_rtp_ssrc_dropped_total"] \
        + counts["voxline_inbound_rtp_empty_total"]
    assert counts["voxline_inbound_rtp_ssrc_dropped_total"] > 100, counts
    assert counts["voxline_inbound_rtp_empty_total"] > 100, counts
    assert refused > sent * 0.9, (refused, sent)
    assert state["state"] == "connected"  # the hostile call itself is not broken by its junk


async def test_flood_before_dtls_is_bounded_and_the_call_still_connects(media_proc) -> None:
    url, _ = media_proc
    pc = new_peer_connection()
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        resp = await _offer(http, url, pc.localDescription.sdp)
        assert resp.status == 201
        answer = await resp.text()
        port = next(int(line.split()[5]) for line in answer.splitlines() if line.startswith("a=candidate:"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # junk that looks like DTLS, from anywhere
            for _ in range(5000):
                s.sendto(bytes([22, 0xFE, 0xFD]) + os.urandom(600), ("127.0.0.1", port))
        await asyncio.sleep(0.5)
        counts = await _metrics(http, url)
        # the kernel drops some of a burst this size; of what arrived, 50 at most went on to DTLS
        assert counts["voxline_inbound_rtp_limited_total"] >= 1000
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        assert await until(lambda: pc.connectionState == "connected", 20)
    await pc.close()


async def test_candidate_flood_reaches_at_most_the_cap_of_ports(media_proc) -> None:
    """An offer naming 400 candidates (40 of them our UDP sockets, plus multicast, link-local,
    broadcast and unspecified addresses): the server checks at most MAX_CANDIDATES of them."""
    url, _ = media_proc
    targets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(40)]
    for t in targets:
        t.bind(("127.0.0.1", 0))
        t.setblocking(False)
    ports = [t.getsockname()[1] for t in targets]
    pc = new_peer_connection()
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    lines = [f"a=candidate:{i} 1 udp {2_000_000_000 - i} {addr} {port} typ host"
             for i, (addr, port) in enumerate([("224.0.0.1", 5000), ("169.254.1.1", 5000), ("0.0.0.0", 5000),
                                               ("255.255.255.255", 5000)]
                                              + [("127.0.0.1", p) for p in ports]
                                              + [("127.0.0.1", 20_000 + i) for i in range(356)])]
    own = pc.localDescription.sdp.splitlines()  # the caller's own candidates out: only ours are checked
    at = next(i for i, line in enumerate(own) if line.startswith("a=candidate:"))
    sdp = "\r\n".join(own[:at] + lines
                       + [line for line in own[at:] if not line.startswith("a=candidate:")]) + "\r\n"
    async with aiohttp.ClientSession() as http:
        resp = await _offer(http, url, sdp)
        assert resp.status == 201, await resp.text()
        deadline, hit = time.monotonic() + 8, {}
        while time.monotonic() < deadline:
            for t, port in zip(targets, ports):
                try:
                    while True:
                        t.recv(2048)
                        hit[port] = hit.get(port, 0) + 1
                except BlockingIOError:
                    pass
            await asyncio.sleep(0.05)
        counts = await _metrics(http, url)
        async with http.delete(url + resp.headers["Location"], headers={"X-Session-Token": resp.headers["X-Session-Token"]}):
            pass
    await pc.close()
    for t in targets:
        t.close()
    assert 0 < len(hit) <= MAX_CANDIDATES, hit
    assert sum(hit.values()) <= MAX_CANDIDATES * 10, hit  # a few STUN retransmissions each at most
    assert counts["voxline_ice_candidates_refused_total"] >= 400 - MAX_CANDIDATES
