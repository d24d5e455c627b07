"""Opus for voice, coded in the event loop: mono 16 kHz PCM out of RTP, mono 48 kHz into RTP.

aiortc decodes each received frame in a thread of its own per receiver (handing every frame
back to the loop with a new Future) and encodes each sent frame in the default executor,
stereo at 96 kbit/s. For one caller that is fine; for a hundred it is thousands of thread
hand-offs a second, and the GIL makes them cost more than the coding itself (a 20 ms mono
frame decodes to 16 kHz in ~25 us with libopus called directly, and encodes in ~100 us).
These classes do the same work inline, in the form the voice pipeline wants
(`voxline.rtc.hooks.decode_inline` puts the decoder under an aiortc receiver).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fractions
import glob
import logging
import os
from typing import Any

import av
import numpy as np

from voxline.audio.resample import Decimator3, StreamResampler

log = logging.getLogger(__name__)
RTP_RATE = 48_000  # Opus RTP always runs a 48 kHz clock
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
TIME_BASE = fractions.Fraction(1, RTP_RATE)
VOICE_BITRATE = 32_000  # mono speech; aiortc's default is 96 kbit/s stereo


def _libopus() -> ctypes.CDLL | None:
    """libopus itself: the copy inside PyAV's wheel, else the system's; None if neither loads."""
    here = os.path.dirname(av.__file__)
    candidates = [*sorted(glob.glob(os.path.join(here, "..", "av.libs", "libopus*"))),
                  *sorted(glob.glob(os.path.join(here, ".dylibs", "libopus*"))), ctypes.util.find_library("opus")]
    for path in candidates:
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
            lib.opus_decoder_create.restype = ctypes.c_void_p
            lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
            lib.opus_decode.restype = ctypes.c_int
            lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_void_p,
                                        ctypes.c_int, ctypes.c_int]
            lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
            lib.opus_encoder_create.restype = ctypes.c_void_p
            lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int,
                                                ctypes.POINTER(ctypes.c_int)]
            lib.opus_encode.restype = ctypes.c_int32
            lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p,
                                        ctypes.c_int32]
            lib.opus_encoder_ctl.restype = ctypes.c_int
            lib.opus_encoder_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int]  # then one int32 (variadic)
            lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
            return lib
        except (OSError, AttributeError):
            continue
    return None


_LIBOPUS: list[ctypes.CDLL | None] = []


def libopus() -> ctypes.CDLL | None:
    if not _LIBOPUS:
        _LIBOPUS.append(_libopus())
    return _LIBOPUS[0]


class OpusDecoder:
    """Opus payloads -> mono s16 PCM at `rate`, every frame's worth at once.

    libopus decodes straight to 8/12/16/24/48 kHz: called directly (ctypes), 16 kHz costs
    ~25 us a frame with no resampler. Without it (`native=False`, or no libopus found), PyAV
    decodes at 48 kHz and 16 kHz is a steady decimation by three (other rates: soxr).
    """

    MAX_SAMPLES = 5_760  # 120 ms at 48 kHz: the longest Opus packet

    def __init__(self, rate: int = 16_000, native: bool = True) -> None:
        self.rate = rate
        lib = libopus() if native and rate in (8_000, 12_000, 16_000, 24_000, 48_000) else None
        self._lib = lib
        self._state: int | None = None
        if lib is not None:
            error = ctypes.c_int(0)
            self._state = lib.opus_decoder_create(rate, 1, ctypes.byref(error))
            if error.value != 0 or not self._state:
                self._lib, self._state = None, None
            else:
                self._buffer = ctypes.create_string_buffer(self.MAX_SAMPLES * 2)
        if self._lib is None:
            self.codec = av.CodecContext.create("libopus", "r")
            self.codec.format = "s16"
            self.codec.layout = "mono"
            self.codec.sample_rate = RTP_RATE
            self._resampler: Decimator3 | StreamResampler = (
                Decimator3() if rate * 3 == RTP_RATE else StreamResampler(RTP_RATE, rate))

    @property
    def native(self) -> bool:
        return self._lib is not None

    def decode(self, payload: bytes) -> bytes:
        if self._lib is not None:
            n = self._lib.opus_decode(self._state, payload, len(payload), self._buffer, self.MAX_SAMPLES, 0)
            return self._buffer.raw[:2 * n] if n > 0 else b""  # n < 0: a corrupt packet, skipped
        frames = self.codec.decode(av.Packet(payload))
        pcm = [self._resampler.push(f.to_ndarray().reshape(-1)) for f in frames]
        return b"".join(p.tobytes() for p in pcm)

    def conceal(self, samples: int) -> bytes:
        """`samples` of stand-in audio for a lost packet: libopus's loss concealment (it carries
        the voice on from the last frame), or silence without libopus."""
        samples = max(0, min(samples, self.MAX_SAMPLES))
        if self._lib is not None and samples:
            n = self._lib.opus_decode(self._state, None, 0, self._buffer, samples, 0)
            if n > 0:
                return self._buffer.raw[:2 * n]
        return bytes(2 * samples)

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is not None and self._state:
            lib.opus_decoder_destroy(self._state)
            self._state = None


class OpusEncoder:
    """20 ms mono s16 frames at 48 kHz -> `av.Packet`s that aiortc sends as they are.

    aiortc's sender packs an `av.Packet` without encoding it again, in the loop, with no
    thread; the packet's pts (48 kHz) becomes the RTP timestamp. CELT only ("restricted low
    delay": the cheapest mode to encode, and clear for speech at 32 kbit/s) at complexity 9,
    WebRTC's own default on desktops. libopus is called directly (~70 us a frame); PyAV, which
    adds ~20 us of frame and packet objects around the same call, is the fallback.
    """

    APPLICATION_RESTRICTED_LOWDELAY = 2051
    # libopus application -> (its constant, PyAV's name). "voip" is what browsers' WebRTC uses
    # for a microphone: SILK or hybrid at voice bitrates, tuned for speech.
    APPLICATIONS = {"restricted-lowdelay": (2051, "lowdelay"), "voip": (2048, "voip"), "audio": (2049, "audio")}
    SET_BITRATE = 4002
    SET_MAX_BANDWIDTH = 4004
    SET_COMPLEXITY = 4010
    # The widest band a receiver's `maxplaybackrate` leaves (RFC 7587): playback rate -> libopus bandwidth.
    BANDWIDTHS = ((8_000, 1101), (12_000, 1102), (16_000, 1103), (24_000, 1104), (48_000, 1105))
    COMPLEXITY = 9
    MAX_PACKET = 1500

    def __init__(self, bitrate: int = VOICE_BITRATE, native: bool = True,
                 application: str = "restricted-lowdelay", max_playback_rate: int = RTP_RATE) -> None:
        """`max_playback_rate`: what the receiver plays at most (its SDP `maxplaybackrate`): 16000
        codes wideband only, every bit below 8 kHz, as a browser does when asked."""
        if application not in self.APPLICATIONS:
            raise ValueError(f"unknown Opus application {application!r} (one of {', '.join(self.APPLICATIONS)})")
        code, av_name = self.APPLICATIONS[application]
        lib = libopus() if native else None
        self._lib = lib
        self._state: int | None = None
        if lib is not None:
            error = ctypes.c_int(0)
            self._state = lib.opus_encoder_create(RTP_RATE, 1, code, ctypes.byref(error))
            if error.value != 0 or not self._state:
                self._lib, self._state = None, None
            else:
                lib.opus_encoder_ctl(self._state, self.SET_BITRATE, ctypes.c_int32(bitrate))
                lib.opus_encoder_ctl(self._state, self.SET_COMPLEXITY, ctypes.c_int32(self.COMPLEXITY))
                lib.opus_encoder_ctl(self._state, self.SET_MAX_BANDWIDTH, ctypes.c_int32(self.bandwidth(max_playback_rate)))
                self._out = ctypes.create_string_buffer(self.MAX_PACKET)
        if self._lib is None:
            self.codec = av.CodecContext.create("libopus", "w")
            self.codec.bit_rate = bitrate
            self.codec.format = "s16"
            self.codec.layout = "mono"
            self.codec.sample_rate = RTP_RATE
            self.codec.time_base = TIME_BASE
            options = {"application": av_name, "compression_level": str(self.COMPLEXITY)}
            band = next(rate for rate, _ in self.BANDWIDTHS if rate >= min(max_playback_rate, RTP_RATE))
            if band < RTP_RATE:  # FFmpeg's libopus wrapper maps `cutoff` (Hz) to the same limit
                options["cutoff"] = str(band // 2)
            self.codec.options = options

    @classmethod
    def bandwidth(cls, max_playback_rate: int) -> int:
        """libopus's bandwidth constant for a receiver that plays at most `max_playback_rate`."""
        return next((bw for rate, bw in cls.BANDWIDTHS if max_playback_rate <= rate), cls.BANDWIDTHS[-1][1])

    @property
    def native(self) -> bool:
        return self._lib is not None

    def encode(self, pcm: bytes, pts: int) -> av.Packet[Any] | None:
        """One 20 ms frame (1,920 bytes) stamped `pts`; None while PyAV's encoder fills its delay."""
        if self._lib is not None:
            n = self._lib.opus_encode(self._state, pcm, FRAME_SAMPLES, self._out, self.MAX_PACKET)
            if n <= 0:
                return None
            packet = av.Packet(self._out.raw[:n])
        else:
            frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
            frame.planes[0].update(pcm)
            frame.sample_rate = RTP_RATE
            frame.pts = pts
            frame.time_base = TIME_BASE
            packets = self.codec.encode(frame)
            if not packets:
                return None
            packet = packets[-1]  # one packet per 20 ms frame, stamped minus its look-ahead
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is not None and self._state:
            lib.opus_encoder_destroy(self._state)
            self._state = None


def encode_frames(samples: np.ndarray, bitrate: int = VOICE_BITRATE,
                  application: str = "restricted-lowdelay", max_playback_rate: int = RTP_RATE) -> list[bytes]:
    """Mono s16 48 kHz audio -> one Opus payload per 20 ms (the last frame padded with silence).

    For callers that send the same recording many times (the capacity benchmark): encode once,
    send the payloads as packets, and no CPU goes on encoding during the call.
    """
    pad = (-samples.size) % FRAME_SAMPLES
    pcm = np.concatenate([samples.astype(np.int16), np.zeros(pad, dtype=np.int16)]).tobytes()
    encoder = OpusEncoder(bitrate, application=application, max_playback_rate=max_playback_rate)
    step = FRAME_SAMPLES * 2
    out = []
    for i in range(0, len(pcm), step):
        packet = encoder.encode(pcm[i:i + step], i // 2)
        out.append(bytes(packet) if packet is not None else b"")
    return out


_SILENCE: dict[str, bytes] = {}


def silence_frame(application: str = "restricted-lowdelay") -> bytes:
    """The Opus payload of 20 ms of silence in that application's mode (computed once)."""
    if application not in _SILENCE:
        _SILENCE[application] = encode_frames(np.zeros(FRAME_SAMPLES * 5, dtype=np.int16),
                                              application=application)[-1]
    return _SILENCE[application]
