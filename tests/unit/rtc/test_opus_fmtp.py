"""The answer asks the caller's Opus encoder for wideband (RFC 7587 fmtp), and our caller follows it."""

from __future__ import annotations

import numpy as np

from voxline.client.audio import WavSource, _encoded
from voxline.rtc.sdp import opus_fmtp, with_opus_fmtp

ANSWER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0", "a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=rtpmap:96 VP8/90000", "a=fmtp:96 max-fs=1", ""])
ASK = {"maxplaybackrate": 16_000, "maxaveragebitrate": 32_000}


def test_the_fmtp_goes_under_the_opus_rtpmap_of_the_audio_line() -> None:
    sdp = with_opus_fmtp(ANSWER, ASK)
    lines = sdp.split("\r\n")
    at = lines.index("a=rtpmap:111 opus/48000/2")
    assert lines[at + 1] == "a=fmtp:111 maxplaybackrate=16000;maxaveragebitrate=32000"
    assert opus_fmtp(sdp) == {"maxplaybackrate": "16000", "maxaveragebitrate": "32000"}
    assert "a=fmtp:96 max-fs=1" in lines  # other m-lines untouched
    assert sdp.endswith("\r\n")


def test_an_existing_fmtp_keeps_its_other_parameters() -> None:
    sdp = ANSWER.replace("a=rtpmap:0 PCMU/8000", "a=fmtp:111 minptime=10;useinbandfec=1;maxplaybackrate=48000\r\n"
                                                  "a=rtpmap:0 PCMU/8000")
    out = with_opus_fmtp(sdp, ASK)
    assert opus_fmtp(out) == {"minptime": "10", "useinbandfec": "1", "maxplaybackrate": "16000",
                              "maxaveragebitrate": "32000"}
    assert sum(line.startswith("a=fmtp:111") for line in out.splitlines()) == 1


def test_no_opus_or_nothing_asked_leaves_the_answer_as_it_is() -> None:
    pcmu = ANSWER.replace("111 0", "0").replace("a=rtpmap:111 opus/48000/2\r\n", "")
    assert with_opus_fmtp(pcmu, ASK) == pcmu
    assert with_opus_fmtp(ANSWER, {}) == ANSWER
    assert opus_fmtp(pcmu) == {}


def test_the_caller_encodes_wideband_at_the_bitrate_asked() -> None:
    speechlike = (np.random.default_rng(3).standard_normal(48_000) * 3_000).astype(np.int16)
    source = WavSource()
    source.use_fmtp({"maxplaybackrate": "16000", "maxaveragebitrate": "24000"})
    assert (source.opus_bitrate, source.opus_max_playback_rate) == (24_000, 16_000)
    asked = _encoded(speechlike, source.opus_bitrate, source.opus_max_playback_rate)
    default = _encoded(speechlike)
    # An Opus packet's first byte names its mode and band (RFC 6716 3.1): 8-11 SILK wideband.
    assert {p[0] >> 3 for p in asked[5:]} <= {8, 9, 10, 11}
    assert {p[0] >> 3 for p in default[5:]} - {8, 9, 10, 11}, "unasked, the encoder codes a wider band"
    assert sum(map(len, asked)) < sum(map(len, default))  # 24 against 32 kbit/s


def test_nonsense_in_the_answer_keeps_the_callers_defaults() -> None:
    source = WavSource()
    before = (source.opus_bitrate, source.opus_max_playback_rate)
    source.use_fmtp({"maxplaybackrate": "lots", "maxaveragebitrate": "99"})
    assert (source.opus_bitrate, source.opus_max_playback_rate) == before
