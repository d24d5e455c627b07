"""The paced 48 kHz playout track: resampling, silence or nothing when idle, clear on barge-in, drained callbacks."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from voxline.bus.codec import AudioKind, AudioMessage
from voxline.rtc import playout
from voxline.rtc.playout import FRAME_SAMPLES, RATE, PlayoutTrack

SID = "session_1760000000000_abcdefghijklmnop"
WALL = 1_760_000_000.0  # the virtual clock's time.time() - time.monotonic()


class VirtualClock:
    """`time.monotonic` that moves one frame on per call, so recv() never sleeps and is never late."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        self.now += FRAME_SAMPLES / RATE
        return self.now

    def time(self) -> float:
        return self.now + WALL


@pytest.fixture
def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    clock = VirtualClock()
    monkeypatch.setattr(playout, "time", SimpleNamespace(monotonic=clock.monotonic, time=clock.time))
    return clock


def tone(seconds: float, rate: int, amplitude: int = 8_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.int16).tobytes()


def audio(turn: int, pcm: bytes, rate: int, seq: int = 0) -> AudioMessage:
    return AudioMessage(SID, seq, pcm, rate, kind=AudioKind.AUDIO, turn=turn)


def marker(kind: AudioKind, turn: int) -> AudioMessage:
    return AudioMessage(SID, 0, kind=kind, turn=turn)


async def pull(track: PlayoutTrack, n: int) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        frame = await track.recv()
        out.append(frame.to_ndarray().reshape(-1))
    return out


def loud(frames: list[np.ndarray]) -> list[bool]:
    return [bool(np.abs(f.astype(np.int32)).max() > 500) for f in frames]


async def test_idle_track_sends_silent_20ms_frames_at_48k(virtual_clock: VirtualClock) -> None:
    track = PlayoutTrack(send_silence=True)
    frames = []
    for _ in range(5):
        frames.append(await track.recv())
    for i, frame in enumerate(frames):
        assert frame.sample_rate == RATE
        assert frame.samples == FRAME_SAMPLES
        assert frame.format.name == "s16" and frame.layout.name == "mono"
        assert frame.pts == i * FRAME_SAMPLES
        assert frame.time_base == playout.TIME_BASE
        assert not frame.to_ndarray().any()
    assert track.frames_sent == 5 and track.frames_late == 0


@pytest.mark.parametrize("rate", [16_000, 22_050, 24_000])
async def test_reply_audio_is_resampled_to_48k_and_drained_once(rate: int, virtual_clock: VirtualClock) -> None:
    drained: list[int] = []
    track = PlayoutTrack(on_drained=drained.append, send_silence=True)
    pcm = tone(0.3, rate)
    for i in range(0, len(pcm), 2_000):  # in TTS-sized pieces
        track.push(audio(1, pcm[i:i + 2_000], rate, seq=i))
    track.push(marker(AudioKind.END, 1))
    assert drained == []
    assert track.queued_ms == pytest.approx(300, abs=5)

    frames = await pull(track, 25)
    heard = loud(frames)
    assert sum(heard) == pytest.approx(15, abs=1)  # 300 ms of sound in 20 ms frames
    assert heard[:14] == [True] * 14 and not any(heard[17:])
    assert drained == [1]
    # The pitch survived the resampling: 440 Hz at 48 kHz.
    spectrum = np.abs(np.fft.rfft(np.concatenate(frames[2:12]).astype(np.float64)))
    assert np.fft.rfftfreq(FRAME_SAMPLES * 10, 1 / RATE)[spectrum.argmax()] == pytest.approx(440, abs=10)

    await pull(track, 10)
    assert drained == [1]  # once


async def test_end_with_nothing_queued_drains_at_once() -> None:
    drained: list[int] = []
    track = PlayoutTrack(on_drained=drained.append, send_silence=True)
    track.push(marker(AudioKind.END, 4))
    assert drained == [4]


async def test_clear_drops_queued_audio_at_once(virtual_clock: VirtualClock) -> None:
    drained: list[int] = []
    track = PlayoutTrack(on_drained=drained.append, send_silence=True)
    track.push(audio(1, tone(2.0, 24_000), 24_000))
    assert loud(await pull(track, 3)) == [True] * 3
    track.push(marker(AudioKind.CLEAR, 1))
    assert track.queued_ms == 0
    assert loud(await pull(track, 3)) == [False] * 3  # the very next frame is silence


async def test_late_audio_and_end_of_a_cleared_turn_are_ignored(virtual_clock: VirtualClock) -> None:
    drained: list[int] = []
    track = PlayoutTrack(on_drained=drained.append, send_silence=True)
    track.push(audio(1, tone(0.5, 22_050), 22_050))
    track.clear(1)
    track.push(audio(1, tone(0.5, 22_050), 22_050))  # still in flight when the clear arrived
    track.push(marker(AudioKind.END, 1))
    assert track.queued_ms == 0
    assert not any(loud(await pull(track, 5)))
    assert drained == []  # nobody waits for a cleared turn
    # The next turn plays normally.
    track.push(audio(2, tone(0.1, 22_050), 22_050))
    track.push(marker(AudioKind.END, 2))
    assert any(loud(await pull(track, 10)))
    assert drained == [2]


async def test_clear_drops_older_turns_too(virtual_clock: VirtualClock) -> None:
    track = PlayoutTrack(send_silence=True)
    track.clear(5)
    for turn in (1, 4, 5):
        track.push(audio(turn, tone(0.1, 16_000), 16_000))
    assert track.queued_ms == 0
    track.push(audio(6, tone(0.1, 16_000), 16_000))
    assert track.queued_ms > 0


async def test_consecutive_replies_each_drain(virtual_clock: VirtualClock) -> None:
    drained: list[int] = []
    track = PlayoutTrack(on_drained=drained.append, send_silence=True)
    for turn in (1, 2):
        track.push(audio(turn, tone(0.1, 22_050), 22_050))
        track.push(marker(AudioKind.END, turn))
        await pull(track, 10)
    assert drained == [1, 2]


async def test_recv_is_paced_by_the_clock() -> None:
    track = PlayoutTrack(send_silence=True)
    await track.recv()  # the first frame goes at once
    start = time.monotonic()
    await pull(track, 10)
    assert time.monotonic() - start >= 10 * 0.02 * 0.9  # never faster than real time
    assert track.frames_sent == 11


async def test_a_late_consumer_counts_late_frames(virtual_clock: VirtualClock) -> None:
    track = PlayoutTrack(send_silence=True)
    await pull(track, 3)
    assert track.frames_late == 0
    virtual_clock.now += 0.2  # the RTP sender stalled for 200 ms
    await pull(track, 1)
    assert track.frames_late == 1


async def test_stopped_track_raises() -> None:
    track = PlayoutTrack(send_silence=True)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_between_replies_nothing_is_sent_and_a_reply_goes_out_at_once() -> None:
    drained: list[int] = []
    track = PlayoutTrack(on_drained=drained.append)  # the default: no silence frames
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(track.recv(), 0.1)  # idle: recv waits for audio
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    track.push(audio(1, tone(0.06, 48_000), 48_000))
    track.push(marker(AudioKind.END, 1))
    first = await waiting
    assert time.monotonic() - started < 0.015  # no wait for a 20 ms tick
    frames = [first] + [await track.recv() for _ in range(2)]
    assert all(loud([f.to_ndarray().reshape(-1) for f in frames]))
    # A short hangover of silence lets receivers that hold the newest frame play the last words.
    hangover = [await track.recv() for _ in range(playout.HANGOVER_FRAMES)]
    assert not any(loud([f.to_ndarray().reshape(-1) for f in hangover]))
    assert drained == [1]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(track.recv(), 0.1)  # then nothing until the next reply
    # The next talk spurt's RTP time includes the silence, so a receiver plays it on time.
    await asyncio.sleep(0.2)
    track.push(audio(2, tone(0.02, 48_000), 48_000))
    spurt = await track.recv()
    gap_s = (spurt.pts - hangover[-1].pts) / RATE
    assert gap_s >= 0.25 and spurt.pts % FRAME_SAMPLES == 0


async def test_stop_wakes_a_track_waiting_for_audio() -> None:
    track = PlayoutTrack()
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.02)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 1)


async def test_a_direct_track_gives_aiortc_nothing_and_marks_talk_spurts() -> None:
    track = PlayoutTrack()
    track.direct = True  # the peer takes frames with next_frame() and sends them itself
    by_aiortc = asyncio.ensure_future(track.recv())
    track.push(audio(1, tone(0.04, 48_000), 48_000))
    track.push(marker(AudioKind.END, 1))
    first = await track.next_frame()
    assert track.spurt_start  # RTP marker bit: the first packet of a talk spurt
    await track.next_frame()
    assert not track.spurt_start
    assert loud([first.to_ndarray().reshape(-1)]) == [True]
    await asyncio.sleep(0.05)
    assert not by_aiortc.done()
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(by_aiortc, 1)


async def test_pause_holds_the_reply_where_it_is_and_resume_goes_on_from_there(virtual_clock: VirtualClock) -> None:
    drained: list[int] = []
    track = PlayoutTrack(on_drained=drained.append, send_silence=True)
    track.push(audio(1, tone(0.2, RATE), RATE))  # 10 frames
    track.push(marker(AudioKind.END, 1))
    assert loud(await pull(track, 4)) == [True] * 4
    track.push(marker(AudioKind.PAUSE, 1))  # the caller said "mm-hmm"
    assert not any(loud(await pull(track, 20)))  # silent meanwhile, nothing lost, not drained
    assert drained == [] and track.queued_ms == pytest.approx(120, abs=1)
    track.push(marker(AudioKind.RESUME, 1))
    assert loud(await pull(track, 6)) == [True] * 6  # the rest, from where it stopped
    await pull(track, 2)
    assert drained == [1]


async def test_a_paused_track_sends_nothing_without_send_silence_and_clear_ends_the_pause() -> None:
    track = PlayoutTrack()
    track.push(audio(1, tone(0.1, RATE), RATE))
    track.push(marker(AudioKind.PAUSE, 1))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(track.next_frame(), 0.1)  # paused: no frame is due
    track.push(marker(AudioKind.CLEAR, 1))  # a real interruption after all
    assert not track.paused and track.queued_ms == 0
    track.push(audio(2, tone(0.1, RATE), RATE))  # the next reply plays
    frame = await asyncio.wait_for(track.next_frame(), 1.0)
    assert loud([frame.to_ndarray().reshape(-1)]) == [True]


async def test_a_newer_reply_is_never_held_by_an_older_pause(virtual_clock: VirtualClock) -> None:
    track = PlayoutTrack(send_silence=True)
    track.push(audio(1, tone(0.1, RATE), RATE))
    track.push(marker(AudioKind.PAUSE, 1))
    track.push(audio(2, tone(0.1, RATE), RATE))
    assert not track.paused
    assert loud(await pull(track, 2)) == [True, True]


async def test_the_send_timeline_reports_each_run_of_a_turns_audio(virtual_clock: VirtualClock) -> None:
    """What the echo canceller's reference is placed by: where each run of a turn's audio
    starts and stops, its position in the turn and its slot on the RTP clock (`time.time()`)."""
    played: list[tuple[int, float, float, bool]] = []
    track = PlayoutTrack(send_silence=True, on_played=lambda *run: played.append(run))
    await pull(track, 2)  # idle: nothing to report
    track.push(audio(1, tone(0.2, 16_000), 16_000))  # 10 frames
    track.push(marker(AudioKind.END, 1))  # the resampler's tail too
    first = len(played)
    await pull(track, 4)
    start = virtual_clock.now + WALL - 3 * FRAME_SAMPLES / RATE  # the slot of the first of the 4
    track.push(marker(AudioKind.PAUSE, 1))
    await pull(track, 3)
    track.push(marker(AudioKind.RESUME, 1))
    await pull(track, 1)
    resumed = virtual_clock.now + WALL
    await pull(track, 7)
    track.push(marker(AudioKind.CLEAR, 1))
    track.push(audio(2, tone(0.04, 16_000), 16_000))
    track.push(marker(AudioKind.END, 2))
    await pull(track, 3)
    assert first == 0
    runs = [(turn, round(pos, 3), round(at - start, 3), playing) for turn, pos, at, playing in played]
    assert runs == [(1, 0.0, 0.0, True), (1, 0.08, 0.08, False),  # paused after 4 frames
                    (1, 0.08, round(resumed - start, 3), True), (1, 0.2, round(resumed - start + 0.12, 3), False),
                    (2, 0.0, round(resumed - start + 0.16, 3), True), (2, 0.04, round(resumed - start + 0.2, 3), False)]
