"""Opus RTP straight between the socket and the codec, past aiortc's per-packet machinery.

aiortc does ICE, DTLS, the SRTP keys and RTCP, and keeps doing them. But it walks every
audio packet through ~10 Python steps: aioice queues the datagram, the DTLS task wakes to
take it, `RtpPacket` parses it with its header extensions, a router picks the receiver, the
receiver keeps NACK state and a jitter buffer that holds two packets back (40 ms), and only
then does a frame reach the decoder. Sending is the mirror image. A server holding a hundred
calls does that 5,000 times a second each way.

`voxline.rtc.hooks.receive_direct` puts a `DirectReceiver` where it takes a connection's
Opus packets in aioice's `datagram_received`, as they come off the socket: decrypt
(libsrtp), read the 12-byte header, decode, hand the PCM on. There is no jitter buffer (the
audio goes to a VAD and a recognizer, not a loudspeaker): a packet older than one already
taken is dropped, and a short run of missing packets is filled by the decoder's loss
concealment so media time stays whole. The receiver's RTCP statistics (reports to the
sender) are still kept. `DirectSender` builds and sends a packet the same way
(`voxline.rtc.send`). Anything else (STUN, DTLS, RTCP, other codecs, packets before the DTLS
handshake is done) goes the usual way.

Every datagram of the connection passes here first, so this is also where a hostile caller
is bounded (`ReceiveLimits`): a packet rate and a byte rate per connection, a smaller budget
before DTLS completes (only a handshake's few datagrams are legitimate then), one inbound
SSRC (another is taken only after the current one has been silent for a second), no
zero-length payloads, and no more decoded audio than real time allows. What is dropped is
counted, never queued.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pylibsrtp

from voxline.audio.opus import OpusDecoder
from voxline.bucket import TokenBucket

log = logging.getLogger(__name__)
MAX_CONCEAL = 5  # a gap up to 100 ms is concealed; a longer one is a jump in media time
MAX_LATE_RUN = 25  # this many "old" packets in a row (0.5 s): the sender's sequence moved back
RTP_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
SSRC_SILENT_S = 1.0  # another SSRC is taken only once the current one has sent nothing this long
MAX_STATS = 4  # SSRCs whose RTCP statistics are kept (aiortc keeps one per SSRC it ever saw)


@dataclass(frozen=True)
class ReceiveLimits:
    """Per-connection bounds on what a caller may send (settings `rtc_max_*`)."""

    packets_per_s: float = 200.0  # Opus at 20 ms is 50 packets a second, RTCP a few more
    bytes_per_s: float = 100_000.0  # 800 kbit/s; Opus tops out at 510
    pre_dtls_datagrams: float = 50.0  # burst before DTLS completes (refilled at a fifth of that a second)
    audio_speed: float = 1.1  # decoded audio at most this times real time (plus a second's burst)


def _is_rtp(data: bytes) -> bool:
    """SRTP (first byte 128-191) and not RTCP (packet types 192-223 share that range)."""
    return len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 224


class _Seen:
    """What aiortc's receive statistics read of a packet (they feed its RTCP reports)."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self, sequence_number: int, timestamp: int) -> None:
        self.sequence_number = sequence_number
        self.timestamp = timestamp


class DirectReceiver:
    """One connection's received Opus packets, decoded as they arrive: `on_pcm(pcm, rtp_time)`.

    `pcm` is mono s16 at `rate`; `rtp_time` is the frame's media time in 48 kHz units from 0.
    """

    def __init__(self, dtls: Any, receiver: Any, payload_types: set[int], on_pcm: Callable[[bytes, int], None],
                 rate: int, pass_on: Callable[[bytes, int], None], limits: ReceiveLimits | None = None) -> None:
        self.dtls = dtls
        self.pass_on = pass_on  # where everything else goes: aioice's own handler
        self._connection: Any = None  # the aioice connection whose handler this is, while it is
        self.payload_types = payload_types
        self.on_pcm = on_pcm
        self.decoder = OpusDecoder(rate)
        self.rate = rate
        self.received = 0
        self.concealed = 0  # frames made up for lost packets
        self.late = 0  # packets dropped: duplicates, or older than one already taken
        self.errors = 0
        self.limited = 0  # datagrams dropped: over the packet or byte rate
        self.pre_dtls_dropped = 0  # datagrams dropped before DTLS completed, over its budget
        self.ssrc_dropped = 0  # packets of a second inbound stream
        self.empty = 0  # packets with no payload (libopus would conceal a frame for each)
        self.audio_dropped = 0  # decoded frames over real time
        limits = limits or ReceiveLimits()
        self._packets = TokenBucket(limits.packets_per_s, limits.packets_per_s)
        self._bytes = TokenBucket(limits.bytes_per_s, limits.bytes_per_s)
        self._pre_dtls = TokenBucket(limits.pre_dtls_datagrams / 5, limits.pre_dtls_datagrams)
        self._audio = TokenBucket(limits.audio_speed * rate, rate)  # samples
        self._ssrc_at = 0.0  # when the current SSRC last sent a packet
        self._stats: dict[int, Any] | None = getattr(receiver, "_RTCRtpReceiver__remote_streams", None)
        self._ssrc: int | None = None
        self._last_seq: int | None = None
        self._late_run = 0  # packets dropped as old in a row
        self._first_ts = 0
        self._last_ts = 0
        self._frame_ts = 960  # 48 kHz units in one frame, from the last decoded one

    def detach(self) -> None:
        """Give the connection back its own handler and let go of the session's objects.

        Called when the connection closes: aioice objects can outlive a call (in log records,
        for one), and must not keep its decoder and pipeline alive through this hook.
        """
        if self._connection is not None and self._connection.__dict__.get("data_received") == self.datagram:
            del self._connection.data_received
        self._connection = None
        self.on_pcm = _ignore

    def datagram(self, data: bytes, component: int) -> None:
        """aioice's `Connection.data_received`: every non-STUN datagram of this connection."""
        now = time.monotonic()
        if not self._packets.take(1, now) or not self._bytes.take(len(data), now):
            self.limited += 1
            return
        srtp = self.dtls._rx_srtp
        if srtp is None:
            if not self._pre_dtls.take(1, now):
                self.pre_dtls_dropped += 1
                return
            self.pass_on(data, component)
            return
        if not _is_rtp(data):
            self.pass_on(data, component)
            return
        ssrc = int.from_bytes(data[8:12], "big")  # in the clear: checked before libsrtp makes a stream for it
        if ssrc != self._ssrc and self._ssrc is not None and now - self._ssrc_at < SSRC_SILENT_S:
            self.ssrc_dropped += 1
            return
        if (data[1] & 0x7F) not in self.payload_types:
            self.pass_on(data, component)
            return
        try:
            self._packet(srtp.unprotect(data))
        except pylibsrtp.Error:
            self.errors += 1  # not ours, replayed or damaged: aiortc drops these too
        except Exception:  # noqa: BLE001 - a bad packet is dropped; it must not end aioice's protocol
            self.errors += 1
            if self.errors in (1, 100) or self.errors % 10_000 == 0:
                log.warning("dropped a received RTP packet that could not be handled (%d so far)", self.errors,
                            exc_info=True)

    def _packet(self, plain: bytes) -> None:
        first, _, seq, ts, ssrc = RTP_HEADER.unpack_from(plain)
        start = 12 + 4 * (first & 0x0F)  # CSRCs
        if first & 0x10:  # header extension: 4 bytes, then its length in 32-bit words
            start += 4 + 4 * int.from_bytes(plain[start + 2:start + 4], "big")
        end = len(plain) - (plain[-1] if first & 0x20 else 0)  # padding
        if start > end:
            raise ValueError("RTP header longer than the packet")
        if start == end:
            self.empty += 1
            return
        self._ssrc_at = time.monotonic()
        if ssrc != self._ssrc or self._late_run > MAX_LATE_RUN:
            # A new stream (or the sender jumped back in sequence): go on from here, and
            # carry media time on from where it was.
            if self._last_seq is not None:
                self._first_ts = (ts - (self._last_ts - self._first_ts) - self._frame_ts) & 0xFFFFFFFF
            else:
                self._first_ts = ts
            self._ssrc, self._last_seq, self._late_run = ssrc, None, 0
        if self._last_seq is not None:
            step = (seq - self._last_seq) & 0xFFFF
            if step == 0 or step >= 0x8000:
                self.late += 1
                self._late_run += 1
                return
            if 1 < step <= MAX_CONCEAL + 1:
                for k in range(1, step):
                    self.concealed += 1
                    if not self._audio.take(self._frame_ts * self.rate // 48_000):
                        self.audio_dropped += 1
                        continue
                    self.on_pcm(self.decoder.conceal(self._frame_ts * self.rate // 48_000),
                                (self._last_ts + k * self._frame_ts - self._first_ts) & 0xFFFFFFFF)
        self._last_seq = seq
        self._late_run = 0
        self.received += 1
        if self._stats is not None:
            stream = self._stats.get(ssrc)
            if stream is None:
                from aiortc.rtcrtpreceiver import StreamStatistics

                for old in [k for k in self._stats if k != self._ssrc][:max(0, len(self._stats) - MAX_STATS + 1)]:
                    del self._stats[old]
                stream = self._stats[ssrc] = StreamStatistics(48_000)
            stream.add(_Seen(seq, ts))  # type: ignore[arg-type]  # reads these two fields only
        pcm = self.decoder.decode(plain[start:end])
        self._last_ts = ts
        if pcm:
            self._frame_ts = len(pcm) // 2 * 48_000 // self.rate
            if not self._audio.take(len(pcm) // 2):
                self.audio_dropped += 1
                return
            self.on_pcm(pcm, (ts - self._first_ts) & 0xFFFFFFFF)


def _ignore(pcm: bytes, rtp_time: int) -> None:
    pass
