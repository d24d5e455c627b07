"""The agent's voice on the caller's peer connection: a paced 48 kHz track.

While the agent speaks it sends a 20 ms frame every 20 ms by the clock. Between replies it
sends nothing (like Opus DTX): encoding, encrypting and sending 50 silent packets a second per
caller was a third of the media server's CPU. When a reply starts, its first frame leaves at
once and the RTP clock jumps by the silence, so receivers play it on time. With
`send_silence=True` it sends silence frames instead, for receivers that want a steady stream.
`clear(turn)` drops everything queued for that turn and older at once (barge-in); late audio
of a cleared turn is ignored. A PAUSE marker holds the queued audio where it is (the caller
made a sound that may only be a backchannel) and RESUME goes on from there. With an
`OpusEncoder` (the connection sends Opus) each frame is encoded here, in the loop, and
leaves as a packet: aiortc would otherwise encode it in a thread.
With `direct` set, aiortc's sender gets nothing from `recv()`: the peer takes each frame from
`next_frame()` and sends it itself (`voxline.rtc.send.DirectSender`).
`on_played(turn, position_s, at, playing)` reports the send timeline, for the agent's echo
canceller: each time a run of one turn's audio starts (a talk spurt, a resume, after an
underrun) or stops, where in the turn's audio it is and when (`time.time()` of the frame's
slot on the RTP clock, which is what the caller's jitter buffer plays by; on a busy loop the
frames themselves leave late and in bursts).
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from voxline.audio.opus import OpusEncoder
from voxline.audio.resample import StreamResampler
from voxline.bus.codec import AudioKind, AudioMessage

RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
FRAME_BYTES = FRAME_SAMPLES * 2
TIME_BASE = fractions.Fraction(1, RATE)
HANGOVER_FRAMES = 3


class PlayoutTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, on_drained: Callable[[int], None] | None = None, send_silence: bool = False,
                 on_played: Callable[[int, float, float, bool], None] | None = None) -> None:
        super().__init__()
        self.on_drained = on_drained
        self.on_played = on_played
        self.send_silence = send_silence
        self.encoder: OpusEncoder | None = None  # set once the connection is known to send Opus
        self.direct = False  # frames are taken by next_frame(), not by aiortc's sender
        self.spurt_start = False  # the last frame taken began a talk spurt (RTP marker bit)
        self._stopped = asyncio.Event()
        self._has_audio = asyncio.Event()
        self._talking = False
        self._hangover = 0
        self.buffer = bytearray()
        self.min_turn = 0  # audio of turns below this was cleared
        self.pending_end: int | None = None
        self.paused_turn: int | None = None  # playback of this turn is held
        self.frames_sent = 0
        self.frames_late = 0
        self._resampler: tuple[int, StreamResampler] | None = None
        self._stream_turn = 0  # the turn whose audio the resampler holds
        self._segments: collections.deque[list[int]] = collections.deque()  # [turn, bytes] of `buffer`, in order
        self._played: dict[int, int] = {}  # bytes of each recent turn's audio sent so far
        self._run: int | None = None  # the turn whose audio the last frame carried, continuing
        self._start: float | None = None
        self._pts = 0

    # -- fed by the bus consumer ------------------------------------------------------------
    def push(self, msg: AudioMessage) -> None:
        if msg.kind is AudioKind.CLEAR:
            self.clear(msg.turn)
            return
        if msg.turn < self.min_turn:
            return
        if msg.kind is AudioKind.PAUSE:
            self.paused_turn = msg.turn
            return
        if msg.kind is AudioKind.RESUME:
            self.resume(msg.turn)
            return
        if self.paused_turn is not None and msg.turn > self.paused_turn:
            self.resume(self.paused_turn)  # a newer reply is never held by an older pause
        if msg.kind is AudioKind.END:
            self._flush_resampler()
            self.pending_end = msg.turn
            if not self.buffer:
                self._drained()
            else:
                self._has_audio.set()
            return
        self.pending_end = None
        samples = np.frombuffer(msg.pcm, dtype=np.int16)
        if self._resampler is None or self._resampler[0] != msg.sample_rate or self._stream_turn != msg.turn:
            self._flush_resampler()
            self._resampler = (msg.sample_rate, StreamResampler(msg.sample_rate, RATE))
            self._stream_turn = msg.turn
        self._queue(self._resampler[1].push(samples).tobytes())
        if self.buffer:
            self._has_audio.set()

    def clear(self, turn: int) -> None:
        self.buffer.clear()
        self._segments.clear()
        for old in [t for t in self._played if t <= turn]:
            del self._played[old]
        self._resampler = None
        self.pending_end = None
        self.paused_turn = None
        self.min_turn = max(self.min_turn, turn + 1)

    def resume(self, turn: int) -> None:
        if self.paused_turn is not None and turn >= self.paused_turn:
            self.paused_turn = None
            if self.buffer or self.pending_end is not None:
                self._has_audio.set()

    @property
    def paused(self) -> bool:
        return self.paused_turn is not None

    @property
    def queued_ms(self) -> float:
        return len(self.buffer) / 2 / RATE * 1000

    # -- pulled by aiortc's RTP sender, or by the peer --------------------------------------
    async def recv(self) -> av.AudioFrame | av.Packet[Any]:
        if self.direct:
            await self._stopped.wait()  # the peer sends this track's frames
            raise MediaStreamError
        return await self.next_frame()

    async def next_frame(self) -> av.AudioFrame | av.Packet[Any]:
        """The next 20 ms, when it is due: a packet once `encoder` is set, else PCM."""
        if self.readyState != "live":
            raise MediaStreamError
        self.spurt_start = False
        while not self.send_silence and not (self.buffer and not self.paused) and not self._hangover:
            if self.pending_end is not None and self._start is not None and not self.buffer:
                # Let the last frame play out, then report the reply finished.
                due = self._start + (self._pts + FRAME_SAMPLES) / RATE - time.monotonic()
                if due > 0:
                    await asyncio.sleep(due)
                self._drained()
                continue  # audio may have come meanwhile
            self._talking = False
            self._has_audio.clear()
            await self._has_audio.wait()
            if self.readyState != "live":
                raise MediaStreamError
        now = time.monotonic()
        wall = time.time() - now  # time.time() of a monotonic instant: the report's clock
        if self._start is None:
            self._start = now
            self._talking = self.spurt_start = True
        elif not self._talking:
            # A new talk spurt: RTP time moves on by the silence, and this frame goes now.
            silent = max(FRAME_SAMPLES, int((now - self._start) * RATE) - self._pts)
            self._pts += -(-silent // FRAME_SAMPLES) * FRAME_SAMPLES
            self._start = now - self._pts / RATE
            self._talking = self.spurt_start = True
        else:
            self._pts += FRAME_SAMPLES
            due = self._start + self._pts / RATE
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 0.02:
                self.frames_late += 1
        data = b""
        if not self.paused:
            data = bytes(self.buffer[:FRAME_BYTES])
            del self.buffer[:FRAME_BYTES]
        self._report(len(data), wall + self._start + self._pts / RATE)
        # A few silent frames after each talk spurt (like Opus DTX's hangover): jitter buffers
        # that release a frame only when later ones arrive (aiortc's) then play the last words.
        self._hangover = HANGOVER_FRAMES if data else max(0, self._hangover - 1)
        if len(data) < FRAME_BYTES:
            data += bytes(FRAME_BYTES - len(data))
            if self.pending_end is not None and not self.buffer:
                self._drained()
        self.frames_sent += 1
        if self.encoder is not None:
            packet = self.encoder.encode(data, self._pts)
            if packet is not None:
                return packet
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(data)
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        return frame

    def stop(self) -> None:
        super().stop()
        self._stopped.set()
        self._has_audio.set()  # wake a recv() waiting for audio, so it ends

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            self._queue(self._resampler[1].push(np.zeros(0, dtype=np.int16), last=True).tobytes())
            self._resampler = None

    def _queue(self, pcm: bytes) -> None:
        """Audio of `_stream_turn` joins the buffer (its turn is kept for `_report`)."""
        if not pcm:
            return
        self.buffer += pcm
        if self._segments and self._segments[-1][0] == self._stream_turn:
            self._segments[-1][1] += len(pcm)
        else:
            self._segments.append([self._stream_turn, len(pcm)])

    def _report(self, n: int, at: float) -> None:
        """`n` bytes from the buffer's head go out in the frame whose slot starts at `at`:
        tell `on_played` where a run of a turn's audio starts or stops."""
        done = 0
        while done < n and self._segments:
            segment = self._segments[0]
            turn, take = segment[0], min(n - done, segment[1])
            position = self._played.get(turn, 0)
            if self._run != turn:
                self._run = turn
                self._notify(turn, position, at + done / 2 / RATE, True)
                for old in [t for t in self._played if t < turn - 1]:
                    del self._played[old]  # bounded: only the recent turns
            self._played[turn] = position + take
            segment[1] -= take
            done += take
            if not segment[1]:
                self._segments.popleft()
        if n < FRAME_BYTES and self._run is not None:  # the run ends in this frame (or before it)
            turn, self._run = self._run, None
            self._notify(turn, self._played.get(turn, 0), at + n / 2 / RATE, False)

    def _notify(self, turn: int, position_bytes: int, at: float, playing: bool) -> None:
        if self.on_played is not None:
            self.on_played(turn, position_bytes / 2 / RATE, at, playing)

    def _drained(self) -> None:
        turn, self.pending_end = self.pending_end, None
        if turn is not None and self.on_drained is not None:
            self.on_drained(turn)
