"""Received audio decoded in the event loop (`decode_inline`), over a real aiortc call on loopback.

Two peer connections in this process: the caller sends `WavSource`'s pre-encoded Opus packets;
the receiver's decoder queue is replaced before the call starts, so every frame comes to
`on_pcm` as 16 kHz PCM with its RTP time, and aiortc's own track carries none.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from audio_helpers import dominant_hz, tone, until
from voxline.audio.opus import FRAME_SAMPLES
from voxline.client.audio import RATE, WavSource
from voxline.rtc.connection import new_peer_connection
from voxline.rtc.hooks import decode_inline
from voxline.rtc.sdp import first_audio_codec

TONE_HZ = 440


def only_loopback(sdp: str) -> bool:
    candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
    return bool(candidates) and all(" 127.0.0.1 " in line for line in candidates)


@pytest.mark.parametrize("out_rate", [16_000, 48_000])  # the server's rate, the client's
async def test_received_opus_is_decoded_in_the_loop_with_its_rtp_time(out_rate: int) -> None:
    sender, receiver = new_peer_connection(), new_peer_connection()
    source = WavSource()
    received: list[tuple[bytes, int]] = []
    remote_tracks: list[MediaStreamTrack] = []
    receiver.on("track", remote_tracks.append)
    try:
        sender.addTrack(source)
        await sender.setLocalDescription(await sender.createOffer())
        assert only_loopback(sender.localDescription.sdp)

        await receiver.setRemoteDescription(sender.localDescription)
        assert decode_inline(receiver, lambda pcm, rtp_time: received.append((pcm, rtp_time)), rate=out_rate)
        await receiver.setLocalDescription(await receiver.createAnswer())
        assert only_loopback(receiver.localDescription.sdp)
        await sender.setRemoteDescription(receiver.localDescription)

        assert first_audio_codec(sender.remoteDescription.sdp) == "opus"
        source.opus = True

        # Silence packets flow from the start: wait for some, then play the tone.
        assert await until(lambda: len(received) >= 5, timeout=5.0), "no audio arrived in 5 s"
        silent_frames = len(received)
        source.play(tone(seconds=1.5))
        assert await until(lambda: source.played_at is not None
                              and time.time() > source.played_at + 1.8, timeout=3.0)
        assert await until(lambda: len(received) >= silent_frames + 60, timeout=2.0), len(received)

        frames = list(received)
        times = [t for _, t in frames]
        assert times[0] % FRAME_SAMPLES == 0  # media time from 0, in 48 kHz units
        steps = np.diff(times)
        per_frame = FRAME_SAMPLES * out_rate // RATE
        # One call per 20 ms packet (960 samples at 48 kHz, 320 at 16 kHz), RTP time 960 apart.
        assert (steps == FRAME_SAMPLES).all(), steps
        assert all(len(pcm) == 2 * per_frame for pcm, _ in frames)

        audio = np.frombuffer(b"".join(pcm for pcm, _ in frames), dtype=np.int16)
        # The PCM covers the RTP time span (less what the resampler still holds).
        span = (times[-1] - times[0] + FRAME_SAMPLES) * out_rate // RATE
        assert span - 2 * per_frame <= audio.size <= span + per_frame, (audio.size, span)
        sound = np.flatnonzero(np.abs(audio.astype(np.int32)) > 100)
        assert sound.size, "the tone never arrived"
        # Before it, silence_frame() decoded: exact silence for (nearly) every frame received then.
        assert sound[0] >= (silent_frames - 2) * per_frame, (sound[0], silent_frames)
        assert 1.4 * out_rate < sound[-1] - sound[0] < 1.6 * out_rate, (sound[-1] - sound[0]) / out_rate
        loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 2_000)  # past the encoder's ramp-up
        assert abs(dominant_hz(audio[loud[0]:loud[-1]], out_rate) - TONE_HZ) < 5

        # aiortc's own decoder never ran: its track has no frame to give.
        assert len(remote_tracks) == 1 and remote_tracks[0].kind == "audio"
        recv = asyncio.ensure_future(remote_tracks[0].recv())
        done, _ = await asyncio.wait([recv], timeout=0.3)
        assert not done, "the remote track gave a frame: audio was decoded twice"
        recv.cancel()
        await asyncio.gather(recv, return_exceptions=True)
    finally:
        await close(sender, receiver)
    # The receiver's stop ended aiortc's decoder thread through the inline queue, and so the track.
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(remote_tracks[0].recv(), timeout=2.0)


async def close(*pcs: RTCPeerConnection) -> None:
    # Closing the receiver stops its decoder thread, which `decode_inline`'s queue must let end.
    await asyncio.wait_for(asyncio.gather(*(pc.close() for pc in pcs)), timeout=5.0)
    assert all(pc.connectionState == "closed" for pc in pcs)


async def test_a_caller_that_offers_only_pcmu_is_decoded_in_the_loop_too() -> None:
    """A non-Opus call (PCMU) goes through aiortc's own decoder, still in the loop, at 16 kHz."""
    from aiortc import RTCRtpSender

    sender, receiver = new_peer_connection(), new_peer_connection()
    source = WavSource()  # sends PCM frames: `opus` stays False, aiortc encodes PCMU
    received: list[tuple[bytes, int]] = []
    try:
        transceiver = sender.addTransceiver(source, direction="sendonly")
        pcmu = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/pcmu"]
        transceiver.setCodecPreferences(pcmu)
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        assert decode_inline(receiver, lambda pcm, rtp_time: received.append((pcm, rtp_time)), rate=16_000)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        assert first_audio_codec(receiver.localDescription.sdp) == "pcmu"

        assert await until(lambda: len(received) >= 5, timeout=5.0), "no audio arrived in 5 s"
        start = len(received)
        source.play(tone(seconds=1.0))
        assert await until(lambda: len(received) >= start + 60, timeout=3.0)
        audio = np.frombuffer(b"".join(pcm for pcm, _ in received[start:]), dtype=np.int16)
        loud = audio[np.abs(audio.astype(np.int32)) > 1_000]
        assert loud.size > 8_000  # most of a second of tone at 16 kHz
        sound = audio[np.flatnonzero(np.abs(audio.astype(np.int32)) > 1_000)[0]:][:8_000]
        assert abs(dominant_hz(sound, 16_000) - TONE_HZ) < 10
    finally:
        await asyncio.wait_for(asyncio.gather(sender.close(), receiver.close()), 5)
