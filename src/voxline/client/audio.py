"""The caller's side of the audio: a WAV file played as a microphone, and a reply recorder.

Both keep wall-clock marks, so voice-to-voice latency is measured the way a caller feels it:
from the moment the last speech sample of the question was sent, to the moment the first
non-silent sample of the reply arrived.
"""

from __future__ import annotations

import asyncio
import fractions
import time
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from voxline.audio.decode import read_audio
from voxline.audio.opus import RTP_RATE, VOICE_BITRATE, encode_frames, silence_frame
from voxline.audio.resample import resample_s16, to_mono_s16

RATE = 48_000
FRAME = 960  # 20 ms
TIME_BASE = fractions.Fraction(1, RATE)
SPEECH_THRESHOLD = 500  # |s16| above this counts as sound (about -36 dBFS)
# The microphone is encoded as browsers' WebRTC encodes one: Opus "voip" (SILK or hybrid for
# speech) at 32 kbit/s. The CELT-only low-delay mode the agent's voice uses is cheaper, but it
# is not what a server hears from real callers, and what it hears is what the benchmarks test.
MIC_APPLICATION = "voip"
# A browser plays received audio through a jitter buffer (WebRTC's NetEq) that holds at least
# about two frames; it grows to what the stream's jitter needs. The latency figure a caller
# hears includes it (`Recorder.played_first_sound_after`).
JITTER_BUFFER_MIN_S = 0.04
JITTER_WINDOW_S = 1.0  # the part of a talk spurt whose jitter sets the buffer's delay


def read_wav_mono(path: str | Path, rate: int = RATE) -> np.ndarray:
    """Any audio file PyAV decodes (WAV of any header, MP3, FLAC...) -> mono s16 at `rate`."""
    return read_audio(path, rate)


def speech_end_sample(samples: np.ndarray, threshold: int = SPEECH_THRESHOLD) -> int:
    """Index just past the last sample louder than `threshold` (0 if there is none)."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    return int(loud[-1]) + 1 if loud.size else 0


def write_wav(path: str | Path, samples: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype(np.int16).tobytes())


class WavSource(MediaStreamTrack):
    """Sends silence until `play(samples)`, then those samples (mono s16, 48 kHz), then silence.

    Frames are paced by the clock, so sample `i` of what is played leaves at
    `played_at + i / 48000`. Once `opus` is set (the connection sends Opus), what is played is
    Opus-encoded once, up front, and sent as packets: a caller then spends no CPU on encoding
    during the call, which lets one process drive many callers. With `paced` set, aiortc's
    sender gets nothing from this track: a `Pacer` takes each packet (`next_payload`) every
    20 ms and sends it itself.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.samples = np.zeros(0, dtype=np.int16)
        self.played_at: float | None = None  # time.time() when sample 0 of `samples` was sent
        self.opus = False
        # What the answer's Opus fmtp asks (`use_fmtp`), as a browser follows it.
        self.opus_bitrate = VOICE_BITRATE
        self.opus_max_playback_rate = RTP_RATE
        self.paced = False
        self._packets: list[bytes] | None = None
        self._clock: float | None = None
        self._pts = 0
        self._offset = 0  # pts at which `samples` started
        self._ended = asyncio.Event()

    def use_fmtp(self, fmtp: dict[str, str]) -> None:
        """Encode as the receiver asks in its answer: `maxaveragebitrate`, `maxplaybackrate` (RFC 7587)."""
        bitrate, rate = fmtp.get("maxaveragebitrate", ""), fmtp.get("maxplaybackrate", "")
        if bitrate.isdigit() and 6_000 <= int(bitrate) <= 510_000:
            self.opus_bitrate = int(bitrate)
        if rate.isdigit() and int(rate) >= 8_000:
            self.opus_max_playback_rate = int(rate)

    def play(self, samples: np.ndarray) -> None:
        self.samples = samples
        self._packets = _encoded(samples, self.opus_bitrate, self.opus_max_playback_rate) if self.opus else None
        self._offset = self._pts + FRAME
        self.played_at = None

    def time_of_sample(self, index: int) -> float | None:
        return None if self.played_at is None else self.played_at + index / RATE

    def stop(self) -> None:
        super().stop()
        self._ended.set()

    def next_payload(self, now: float) -> tuple[bytes, int]:
        """The Opus payload of the frame leaving at `now` (time.time()), and its pts."""
        index = self._step(now) // FRAME
        packets = self._packets if self._packets is not None else []
        return (packets[index] if 0 <= index < len(packets) else silence_frame(MIC_APPLICATION)), self._pts

    async def recv(self) -> av.AudioFrame | av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self.paced:
            await self._ended.wait()  # a Pacer sends this track's packets
            raise MediaStreamError
        if self._clock is not None:
            wait = self._clock + (self._pts + FRAME) / RATE - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        if self.opus:
            payload, pts = self.next_payload(time.time())
            packet = av.Packet(payload)
            packet.pts = pts
            packet.time_base = TIME_BASE
            return packet
        position = self._step(time.time())
        chunk = self.samples[position:position + FRAME] if position >= 0 else self.samples[:0]
        if chunk.size < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - chunk.size, dtype=np.int16)])
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(chunk.tobytes())
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        return frame

    def _step(self, now: float) -> int:
        """Move on one frame, leaving at `now`; its position in `samples` (negative before them)."""
        if self._clock is None:
            self._clock = now
        else:
            self._pts += FRAME
        position = self._pts - self._offset
        if position == 0 and self.samples.size:
            self.played_at = now
        return position


_ENCODED: dict[tuple[int, int, int], tuple[np.ndarray, list[bytes]]] = {}


def _encoded(samples: np.ndarray, bitrate: int = VOICE_BITRATE, max_playback_rate: int = RTP_RATE) -> list[bytes]:
    """Opus payloads of `samples`, encoded once per array and settings (callers replay the same questions)."""
    key = (id(samples), bitrate, max_playback_rate)
    hit = _ENCODED.get(key)
    if hit is not None and hit[0] is samples:
        return hit[1]
    if len(_ENCODED) > 64:
        _ENCODED.clear()
    packets = encode_frames(samples, bitrate, MIC_APPLICATION, max_playback_rate)
    _ENCODED[key] = (samples, packets)
    return packets


class Recorder:
    """Records a remote audio track as mono 48 kHz and notes when each sound arrived.

    With `keep_audio=False` only the sound times and frame count are kept (load tests).
    """

    def __init__(self, threshold: int = SPEECH_THRESHOLD, keep_audio: bool = True) -> None:
        self.threshold = threshold
        self.keep_audio = keep_audio
        self.chunks: list[np.ndarray] = []
        self.sounds: list[float] = []  # time.time() of each frame's first loud sample
        self.loud_media: list[float] = []  # media time (s, the sender's RTP clock from 0) of each loud frame
        self.timeline: list[tuple[float, float, float | None]] = []  # (media s, arrived, sound time) per frame
        self.frames = 0

    @property
    def first_sound(self) -> float | None:
        return self.sounds[0] if self.sounds else None

    @property
    def last_sound(self) -> float | None:
        return self.sounds[-1] if self.sounds else None

    def first_sound_after(self, t: float) -> float | None:
        return next((s for s in self.sounds if s > t), None)

    def played_first_sound_after(self, t: float, min_delay_s: float = JITTER_BUFFER_MIN_S) -> float | None:
        """When the first sound after `t` would be heard through a browser-like jitter buffer.

        The buffer delays the talk spurt's first frame by what its next `JITTER_WINDOW_S` of
        frames need so that none arrives after its time to play (the delay an adaptive buffer
        settles on), and by at least `min_delay_s`. None if there is no sound after `t`.
        """
        start = next((i for i, (_, _, sound) in enumerate(self.timeline) if sound is not None and sound > t), None)
        if start is None:
            return None
        media0, arrived0, sound0 = self.timeline[start]
        assert sound0 is not None
        late = max(arrived - (arrived0 + media - media0) for media, arrived, _ in self.timeline[start:]
                   if 0 <= media - media0 <= JITTER_WINDOW_S)
        return sound0 + max(min_delay_s, late)

    def sound_between(self, t0: float, t1: float) -> bool:
        return any(t0 <= s <= t1 for s in self.sounds)

    def on_audio(self, pcm: bytes, rtp_time: int) -> None:
        """One decoded frame (mono s16 at 48 kHz), handed over as it arrives (`decode_inline`)."""
        self.frame(np.frombuffer(pcm, dtype=np.int16), rtp_time / RATE, time.time())

    async def run(self, track: MediaStreamTrack) -> None:
        """Record from a track (when the connection decodes in aiortc's own thread)."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            arrived = time.time()
            if not isinstance(frame, av.AudioFrame):
                continue  # an audio track gives audio frames; anything else is not for the recorder
            mono = to_mono_s16(frame.to_ndarray().reshape(-1), len(frame.layout.channels))
            if frame.sample_rate != RATE:
                mono = np.frombuffer(resample_s16(mono.tobytes(), frame.sample_rate, RATE), dtype=np.int16)
            pts, base = frame.pts, frame.time_base
            self.frame(mono, float(pts * base) if pts is not None and base is not None else None, arrived)

    def frame(self, mono: np.ndarray, media_s: float | None, arrived: float) -> bool:
        """Keep one frame: its samples, and when its first loud sample was heard. True if loud."""
        self.frames += 1
        if self.keep_audio:
            self.chunks.append(mono)
        loud = np.flatnonzero(np.abs(mono.astype(np.int32)) > self.threshold)
        sound = None
        if loud.size:
            # The frame arrived whole; its first loud sample plays `loud[0]` samples in.
            sound = arrived + float(loud[0]) / RATE
            self.sounds.append(sound)
            self.loud_media.append(float("nan") if media_s is None else media_s)  # one per entry of `sounds`
        if media_s is not None:
            self.timeline.append((media_s, arrived, sound))
        return bool(loud.size)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)

    def reply_audio(self, pad_s: float = 0.2) -> np.ndarray:
        """The recording from just before the first sound to just after the last."""
        audio = self.audio()
        loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > self.threshold)
        if not loud.size:
            return audio[:0]
        pad = int(pad_s * RATE)
        return audio[max(0, loud[0] - pad): loud[-1] + pad]
