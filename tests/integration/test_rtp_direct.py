"""Opus RTP sent and received past aiortc's per-packet path (`voxline.rtc.receive`), over a real
aiortc call on loopback: a paced `WavSource` sends through a `DirectSender`, the other side
takes the packets off the socket with `receive_direct`. aiortc still did ICE, DTLS and RTCP."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from audio_helpers import dominant_hz, tone, until
from voxline.audio.opus import FRAME_SAMPLES
from voxline.client.audio import WavSource
from voxline.client.pacer import pacer
from voxline.rtc.connection import new_peer_connection
from voxline.rtc.hooks import receive_direct
from voxline.rtc.send import DirectSender

TONE_HZ = 440


async def call(drop_every: int = 0) -> tuple[list[tuple[bytes, int]], dict[str, int], int]:
    """One 1.5 s tone over a direct call; with `drop_every`, that share of RTP datagrams is lost
    on the way in. Returns the frames received, the receiver's counts, and the packets lost
    that the receiver reported to the sender over RTCP."""
    a, b = new_peer_connection(), new_peer_connection()
    source = WavSource()
    got: list[tuple[bytes, int]] = []
    try:
        a.addTrack(source)
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        direct = receive_direct(b, lambda pcm, t: got.append((pcm, t)), rate=16_000)
        assert direct is not None
        if drop_every:
            hook = direct.datagram
            seen = [0]

            def lossy(data: bytes, component: int) -> None:
                if 127 < data[0] < 192 and data[1] & 0x7F == next(iter(direct.payload_types)):
                    seen[0] += 1
                    if seen[0] % drop_every == 0:
                        return
                hook(data, component)

            b.getTransceivers()[0].receiver.transport.transport._connection.data_received = lossy
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        sender = DirectSender.for_connection(a)
        assert sender is not None
        source.opus = True
        pacer().add(source, sender)

        assert await until(lambda: len(got) >= 10, timeout=5.0), "no audio arrived in 5 s"
        source.play(tone(seconds=1.5))
        assert await until(lambda: source.played_at is not None and time.time() > source.played_at + 2.6, 4.0)
        lost = 0
        for report in (await a.getStats()).values():
            if report.type == "remote-inbound-rtp":
                lost = report.packetsLost
        counts = {"received": direct.received, "concealed": direct.concealed, "sent": sender.sent,
                  "late": direct.late, "errors": direct.errors}
        return got, counts, lost
    finally:
        pacer().remove(source)
        await asyncio.wait_for(asyncio.gather(a.close(), b.close()), 5.0)


async def test_a_tone_goes_socket_to_decoder_in_order_and_aiortc_reports_it() -> None:
    got, counts, lost = await call()
    times = np.array([t for _, t in got])
    assert (np.diff(times) == FRAME_SAMPLES).all()  # every 20 ms, in order, media time whole
    assert counts["received"] == len(got) and not counts["concealed"] and not counts["errors"]
    assert counts["sent"] - 5 <= counts["received"] <= counts["sent"]  # the last few may be in flight
    audio = np.frombuffer(b"".join(pcm for pcm, _ in got), dtype=np.int16)
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 2_000)
    assert 1.4 * 16_000 < loud[-1] - loud[0] < 1.6 * 16_000
    assert abs(dominant_hz(audio[loud[0]:loud[-1]], 16_000) - TONE_HZ) < 5
    assert lost == 0


async def test_lost_packets_are_concealed_and_reported_to_the_sender_over_rtcp() -> None:
    got, counts, lost = await call(drop_every=10)
    times = np.array([t for _, t in got])
    assert (np.diff(times) == FRAME_SAMPLES).all()  # the holes were filled
    assert counts["concealed"] >= 10
    assert lost > 0  # aiortc's receiver reports (RTCP) still count what the direct path took


async def test_closing_the_connection_unhooks_the_direct_path() -> None:
    """aioice objects can outlive a call (log records keep them): once closed, its connection
    must no longer lead to the session's decoder and pipeline."""
    a, b = new_peer_connection(), new_peer_connection()
    a.addTrack(WavSource())
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    got: list[bytes] = []
    direct = receive_direct(b, lambda pcm, t: got.append(pcm))
    assert direct is not None
    connection = b.getTransceivers()[0].receiver.transport.transport._connection
    assert connection.data_received == direct.datagram
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(asyncio.gather(a.close(), b.close()), 5.0)
    assert "data_received" not in connection.__dict__  # aioice's own handler again
    direct.on_pcm(b"x", 0)
    assert not got
