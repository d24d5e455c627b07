"""`DirectReceiver` without sockets: hand-made RTP packets, encrypted with real libsrtp
sessions, in at `datagram` the way aioice hands them over."""

from __future__ import annotations

import os
import struct
from types import SimpleNamespace

import numpy as np
import pylibsrtp

from audio_helpers import tone
from voxline.audio.opus import FRAME_SAMPLES, encode_frames
from voxline.rtc.receive import MAX_CONCEAL, MAX_LATE_RUN, DirectReceiver, ReceiveLimits

PT = 111
KEY = os.urandom(30)


def srtp(direction: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=direction))


class Line:
    """One sender's packets through SRTP into one `DirectReceiver` (16 kHz)."""

    def __init__(self, plain: bool = False) -> None:
        self.plain = plain
        self.tx = srtp(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self.got: list[tuple[bytes, int]] = []
        self.passed: list[bytes] = []
        self.rx = DirectReceiver(SimpleNamespace(_rx_srtp=srtp(pylibsrtp.Policy.SSRC_ANY_INBOUND)), None, {PT},
                                 lambda pcm, t: self.got.append((pcm, t)), 16_000,
                                 lambda data, component: self.passed.append(data))
        self.payloads = encode_frames(tone(seconds=2.0))

    def send(self, seq: int, ts: int, ssrc: int = 1234, pt: int = PT, payload: bytes | None = None,
             csrcs: int = 0, extension: bytes = b"", padding: int = 0) -> None:
        first = 0x80 | csrcs | (0x10 if extension else 0) | (0x20 if padding else 0)
        header = struct.pack("!BBHII", first, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + b"\0\0\0\7" * csrcs
        if extension:
            header += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
        body = payload if payload is not None else self.payloads[(seq % 90) + 5]
        tail = (b"\0" * (padding - 1) + bytes([padding])) if padding else b""
        if self.plain:  # past SRTP (whose replay check would refuse the orders tried here)
            self.rx._packet(header + body + tail)
        else:
            self.rx.datagram(self.tx.protect(header + body + tail), 1)

    def times(self) -> list[int]:
        return [t for _, t in self.got]


def test_each_packet_is_decoded_at_once_with_media_time_from_zero() -> None:
    line = Line()
    for k in range(10):
        line.send(5000 + k, 777_000 + k * FRAME_SAMPLES)
    assert line.times() == [k * FRAME_SAMPLES for k in range(10)]
    assert all(len(pcm) == 640 for pcm, _ in line.got)  # 20 ms at 16 kHz
    assert line.rx.received == 10 and not line.rx.concealed and not line.rx.errors


def test_csrcs_header_extension_and_padding_are_skipped() -> None:
    plain, fancy = Line(), Line()
    payload = plain.payloads[20]
    plain.send(1, 0, payload=payload)
    fancy.send(1, 0, payload=payload, csrcs=2, extension=b"\x10\xff\x00\x00", padding=4)
    assert fancy.got == plain.got and fancy.got[0][0]


def test_a_short_gap_is_concealed_and_media_time_stays_whole() -> None:
    line = Line()
    for k in [0, 1, 2, 5, 6]:  # 3 and 4 lost
        line.send(100 + k, k * FRAME_SAMPLES)
    assert line.times() == [k * FRAME_SAMPLES for k in range(7)]
    assert line.rx.concealed == 2 and line.rx.received == 5
    audio = np.frombuffer(b"".join(pcm for pcm, _ in line.got[3:5]), dtype=np.int16)
    assert np.abs(audio.astype(np.int32)).max() > 500  # the tone carried on, not silence


def test_a_long_gap_is_a_jump_in_media_time() -> None:
    line = Line()
    line.send(10, 0)
    line.send(10 + MAX_CONCEAL + 5, (MAX_CONCEAL + 5) * FRAME_SAMPLES)
    assert line.times() == [0, (MAX_CONCEAL + 5) * FRAME_SAMPLES] and not line.rx.concealed


def test_late_and_replayed_packets_are_dropped_across_the_sequence_wrap() -> None:
    line = Line()
    line.send(65534, 0)
    line.send(0, 2 * FRAME_SAMPLES)  # wraps; 65535 missing: concealed
    line.send(65535, FRAME_SAMPLES)  # it comes late: its time was already given
    assert line.times() == [0, FRAME_SAMPLES, 2 * FRAME_SAMPLES]
    assert line.rx.late == 1 and line.rx.concealed == 1
    line.tx = srtp(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    line.send(0, 2 * FRAME_SAMPLES)  # a replayed copy: SRTP refuses it
    assert line.rx.errors == 1 and len(line.got) == 3


def test_a_new_ssrc_or_a_sequence_that_moved_back_goes_on_from_there() -> None:
    line = Line(plain=True)
    for k in range(3):
        line.send(9000 + k, 50_000 + k * FRAME_SAMPLES)
    line.send(40_000, 4_000, ssrc=99)  # a new stream: taken, media time carries on
    assert line.times() == [0, FRAME_SAMPLES, 2 * FRAME_SAMPLES, 3 * FRAME_SAMPLES]
    for k in range(MAX_LATE_RUN + 3):  # same stream, sequence set far back: dropped a while, then taken
        line.send(39_000 + k, 4_000 + (k + 1) * FRAME_SAMPLES, ssrc=99)
    assert line.rx.late == MAX_LATE_RUN + 1
    assert len(line.got) == 4 + 2
    assert line.times()[-2:] == [4 * FRAME_SAMPLES, 5 * FRAME_SAMPLES]


def test_other_payload_types_rtcp_and_dtls_go_the_usual_way() -> None:
    line = Line()
    line.send(1, 0, pt=0)  # PCMU: for aiortc's receiver
    rtcp = bytes([0x80, 200]) + bytes(26)  # a sender report
    dtls = bytes([22, 0xFE, 0xFD]) + bytes(20)
    line.rx.datagram(rtcp, 1)
    line.rx.datagram(dtls, 1)
    assert len(line.passed) == 3 and not line.got


def test_damaged_or_garbage_packets_are_dropped_and_counted() -> None:
    line = Line()
    line.send(1, 0)
    line.rx.datagram(struct.pack("!BBHII", 0x80, PT, 2, 0, 1234) + os.urandom(40), 1)  # fails authentication
    line.send(2, FRAME_SAMPLES, payload=b"")  # empty payload: dropped (libopus would make up a frame)
    line.send(3, 2 * FRAME_SAMPLES, payload=b"\xff" * 3)  # not Opus: skipped; 2 looks lost: concealed
    line.send(4, 3 * FRAME_SAMPLES)
    assert line.rx.errors == 1 and line.rx.empty == 1
    assert line.times() == [0, FRAME_SAMPLES, 3 * FRAME_SAMPLES]


def test_zero_length_payloads_make_no_audio() -> None:
    line = Line()
    for k in range(200):
        line.send(k, k * FRAME_SAMPLES, payload=b"")
    assert line.rx.empty == 200 and not line.got


def test_a_second_ssrc_is_dropped_before_srtp_while_the_first_one_talks() -> None:
    line = Line()
    for k in range(20):
        line.send(100 + k, k * FRAME_SAMPLES)
        line.send(500 + k, k * FRAME_SAMPLES, ssrc=5000 + k)  # fan-out: a new stream every packet
    assert line.rx.ssrc_dropped == 20 and line.rx.received == 20 and not line.rx.errors
    line.rx._ssrc_at -= 2  # the first stream silent for 2 s: a new one is taken
    line.send(7, 0, ssrc=77)
    assert line.rx.received == 21 and line.rx._ssrc == 77


def test_packet_byte_and_pre_dtls_rates_are_capped() -> None:
    line = Line()
    line.rx = DirectReceiver(SimpleNamespace(_rx_srtp=None), None, {PT}, lambda pcm, t: None, 16_000,
                             lambda data, component: line.passed.append(data),
                             ReceiveLimits(packets_per_s=100, bytes_per_s=1e9, pre_dtls_datagrams=10))
    for _ in range(1000):  # a flood before the handshake
        line.rx.datagram(bytes([22]) + bytes(99), 1)
    assert len(line.passed) <= 12 and line.rx.pre_dtls_dropped + line.rx.limited == 1000 - len(line.passed)
    big = DirectReceiver(SimpleNamespace(_rx_srtp=None), None, {PT}, lambda pcm, t: None, 16_000,
                         lambda data, component: None, ReceiveLimits(bytes_per_s=10_000, pre_dtls_datagrams=1e9))
    for _ in range(100):
        big.datagram(bytes(1200), 1)
    assert big.limited >= 90


def test_decoded_audio_never_runs_faster_than_real_time() -> None:
    line = Line(plain=True)
    for k in range(0, 600, 6):  # every packet claims 5 lost before it: 6 frames for one packet
        line.send(k, k * FRAME_SAMPLES)
    frames = len(line.got)
    assert frames <= 16_000 * 1.2 // 320 + 1 and line.rx.audio_dropped > 0


def test_before_the_handshake_packets_go_the_usual_way() -> None:
    line = Line()
    line.rx.dtls = SimpleNamespace(_rx_srtp=None)
    line.send(1, 0)
    assert len(line.passed) == 1 and not line.got
