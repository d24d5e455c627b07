"""The installed aiortc, aioice, pylibsrtp, av and libopus take voxline's fast paths on a real call.

Each hook in `voxline.rtc.hooks` falls back to aiortc's own path when the internals it
expects are not there, so a call still works after an upgrade, but on the slow path: the
100-call capacity is gone with no error. This test makes that loud. It places a real call
over loopback to the media server and checks, on both ends, that received Opus comes straight
off the socket (direct receive), that anything else would be decoded in the loop (inline
decode), that the agent's voice leaves through `DirectSender` (direct send), and that libopus
is called directly. A failure names the installed versions next to the tested ones
(constraints.txt, which scripts/setup.sh and the Dockerfile install with).
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport

from audio_helpers import until
from metrics_text import parse_metrics
from voxline.audio.opus import OpusDecoder, OpusEncoder
from voxline.bus.codec import AudioMessage
from voxline.client.audio import WavSource
from voxline.client.whip import WhipClient
from voxline.rtc.hooks import audio_transceiver, check_fast_paths, probe_fast_paths
from voxline.rtc.inline import InlineDecoderQueue

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"
MEDIA_PACKAGES = ("aiortc", "aioice", "pylibsrtp", "av")


def versions() -> str:
    """'aiortc 1.16.0 (tested 1.16.0), ...' for the message of a failure."""
    tested = {}
    for line in CONSTRAINTS.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            tested[name.strip().lower()] = version.strip()
    return ", ".join(f"{p} {importlib.metadata.version(p)} (tested {tested.get(p, '?')})" for p in MEDIA_PACKAGES)


def test_every_media_package_is_pinned_in_the_constraints_file() -> None:
    pinned = {line.partition("==")[0].lower() for line in CONSTRAINTS.read_text().splitlines() if "==" in line}
    assert set(MEDIA_PACKAGES) <= pinned, f"constraints.txt lacks {set(MEDIA_PACKAGES) - pinned}"


async def test_a_call_takes_every_fast_path(media_server) -> None:
    assert OpusEncoder().native and OpusDecoder(16_000).native, f"libopus is not called directly ({versions()})"
    client = WhipClient(media_server.url)
    heard: list[bytes] = []
    try:
        session = await client.connect(WavSource(), on_audio=lambda pcm, rtp_time: heard.append(pcm))
        peer = media_server.media.peers[session.session_id]
        receiver = audio_transceiver(peer.pc).receiver
        assert peer.direct is not None, f"server: direct receive not installed ({versions()})"
        assert isinstance(receiver._RTCRtpReceiver__decoder_queue, InlineDecoderQueue), \
            f"server: inline decode not installed ({versions()})"
        assert peer.playout.direct, f"server: direct send not installed ({versions()})"
        assert client.inline_audio and client.direct is not None, f"client: fast receive not installed ({versions()})"

        # The caller's audio arrives by the direct path, not by aiortc's receiver.
        assert await until(lambda: peer.direct.received >= 25 and peer.frames_in >= 25, 15), \
            f"server: caller audio did not come by the direct path ({versions()})"
        # The agent's voice leaves by DirectSender and reaches the caller by its direct path.
        tone = (8000 * np.sin(np.arange(16_000) * 2 * np.pi * 440 / 16_000)).astype(np.int16).tobytes()
        peer.playout.push(AudioMessage(session.session_id, 1, tone, 16_000, turn=1))
        assert await until(lambda: client.direct.received >= 25 and len(heard) >= 25, 15), \
            f"the agent's voice did not come by the direct paths ({versions()})"
        assert peer.direct.errors == 0 and client.direct.errors == 0
        # /metrics says which path each live call takes.
        async with aiohttp.ClientSession() as http, http.get(f"{media_server.url}/metrics") as resp:
            paths = parse_metrics(await resp.text())
        assert paths['voxline_peer_paths{direction="receive",path="direct"}'] == 1
        assert paths['voxline_peer_paths{direction="receive",path="aiortc"}'] == 0
        assert paths['voxline_peer_paths{direction="send",path="direct"}'] == 1
    finally:
        await client.close()


async def test_the_start_up_probe_finds_every_fast_path() -> None:
    assert await probe_fast_paths() == {}, versions()


async def test_a_fast_path_that_cannot_install_is_one_warning_line(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """As if an aiortc release renamed the DTLS transport's SRTP session: the probe names the path."""
    original = RTCDtlsTransport.__init__

    def renamed(self: RTCDtlsTransport, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self._rx_srtp_renamed = self.__dict__.pop("_rx_srtp")

    monkeypatch.setattr(RTCDtlsTransport, "__init__", renamed)
    with caplog.at_level(logging.WARNING, logger="voxline.rtc.hooks"):
        failed = await check_fast_paths()
    assert set(failed) == {"receive_direct"}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith("fast path receive_direct unavailable: ") and "aiortc 1." in warned[0]
