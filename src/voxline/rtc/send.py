"""The agent's voice (and the benchmark callers' packets) sent as RTP built in the loop.

aiortc's sender makes an `RtpPacket` with header extensions and keeps a 128-packet
retransmission history per frame; for audio that goes to a loudspeaker, header + SRTP +
`sendto` is all that is needed (measured: the capacity benchmark's late frames went from
10 % to under 1 % at 100 callers with this and `voxline.rtc.receive`).
"""

from __future__ import annotations

import random
from typing import Any

from aiortc import RTCPeerConnection

from voxline.rtc.hooks import audio_transceiver
from voxline.rtc.receive import RTP_HEADER


class DirectSender:
    """Sends Opus payloads on a connection's audio stream, built and encrypted in the loop.

    It uses the SSRC aiortc's sender announced; that sender should then be given nothing to
    send (its RTCP keeps running). Payloads given before the connection is up are dropped.
    """

    def __init__(self, dtls: Any, ssrc: int, payload_type: int) -> None:
        self.dtls = dtls
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sent = 0
        self._seq = random.getrandbits(16)
        self._ts0 = random.getrandbits(32)

    @classmethod
    def for_connection(cls, pc: RTCPeerConnection) -> DirectSender | None:
        """The sender for this connection's audio, once codecs are negotiated; None if Opus
        is not the codec it sends or aiortc's internals are not what this expects."""
        transceiver = audio_transceiver(pc)
        codecs = getattr(transceiver, "_codecs", None) if transceiver is not None else None
        sender = transceiver.sender if transceiver is not None else None
        dtls = getattr(sender, "transport", None)
        ssrc = getattr(sender, "_ssrc", None)
        if not codecs or codecs[0].mimeType.lower() != "audio/opus" or not hasattr(dtls, "_tx_srtp") or ssrc is None:
            return None
        return cls(dtls, ssrc, codecs[0].payloadType)

    def _route(self) -> tuple[Any, Any] | None:
        """(SRTP session, ICE pair) once DTLS is done and ICE chose a pair with a live socket."""
        srtp = self.dtls._tx_srtp
        pair = getattr(self.dtls.transport._connection, "_nominated", {}).get(1)
        if srtp is None or pair is None or pair.protocol.transport is None:
            return None
        return srtp, pair

    @property
    def ready(self) -> bool:
        """Packets can go."""
        return self._route() is not None

    def send(self, payload: bytes, pts: int, marker: bool = False) -> bool:
        """Send one packet stamped `pts` (48 kHz units); False if the connection is not up."""
        route = self._route()
        if route is None:
            return False
        srtp, pair = route
        header = RTP_HEADER.pack(0x80, self.payload_type | (0x80 if marker else 0), self._seq,
                              (self._ts0 + pts) & 0xFFFFFFFF, self.ssrc)
        pair.protocol.transport.sendto(srtp.protect(header + payload), pair.remote_addr)
        self._seq = (self._seq + 1) & 0xFFFF
        self.sent += 1
        return True
