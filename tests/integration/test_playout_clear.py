"""Barge-in's CLEAR end to end: a cleared reply never plays again, not even in front of the next one.

The media server alone on the in-memory bus, a real aiortc caller over loopback, and the
agent's side played by the test: it publishes turn 1 (a 3 s tone at 440 Hz), and once the
caller hears it, PAUSE and CLEAR for turn 1 and then turn 2 (1 s at 1,500 Hz), as the agent
does on a real interruption. What the caller received is told apart by pitch, frame by frame.
A media server that ignored CLEAR would resume the paused turn 1 when turn 2 arrives (a newer
reply is never held by an older pause), so the rest of the 440 Hz tone would play first; the
browser barge-in test cannot see that, because it cannot tell greeting audio from reply audio.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from voxline.bus import Topic
from voxline.bus.codec import AudioKind, AudioMessage
from voxline.client.caller import Caller

RATE = 16_000
FRAME = 960  # 20 ms at 48 kHz, as the caller records


def tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


def pitches(recorded: np.ndarray) -> list[str]:
    """Per 20 ms frame: "low" (440 Hz), "high" (1,500 Hz) or "" (neither: silence, an edge)."""
    labels = []
    freqs = np.fft.rfftfreq(FRAME, 1 / 48_000)
    low, high = (freqs > 350) & (freqs < 550), (freqs > 1400) & (freqs < 1600)
    window = np.hanning(FRAME)  # 440 Hz is not a whole number of cycles in 20 ms: keep it in its band
    for i in range(0, len(recorded) - FRAME + 1, FRAME):
        spectrum = np.abs(np.fft.rfft(recorded[i:i + FRAME].astype(np.float64) * window))
        total = spectrum.sum() + 1e-9
        labels.append("low" if spectrum[low].sum() > 0.5 * total else "high" if spectrum[high].sum() > 0.5 * total
                      else "")
    return labels


async def test_a_cleared_reply_is_not_played_in_front_of_the_next(media_server) -> None:
    bus = media_server.media.bus
    async with Caller(media_server.url) as caller:
        sid, seq = caller.session_id, 0

        async def send(kind: AudioKind, turn: int, pcm: np.ndarray | None = None) -> None:
            nonlocal seq
            seq += 1
            data = b"" if pcm is None else pcm.tobytes()
            await bus.publish(Topic.AUDIO_OUT, sid, AudioMessage(sid, seq, data, RATE, time.time(), kind, turn).encode())

        first = tone(440, 3.0)
        for i in range(0, len(first), RATE // 10):  # 100 ms messages, as the agent streams TTS
            await send(AudioKind.AUDIO, 1, first[i:i + RATE // 10])
        await send(AudioKind.END, 1)
        deadline = time.monotonic() + 10
        while not caller.recorder.sounds or time.time() - caller.recorder.sounds[0] < 0.4:
            assert time.monotonic() < deadline, "turn 1 never reached the caller"
            await asyncio.sleep(0.02)
        await send(AudioKind.PAUSE, 1)
        await send(AudioKind.CLEAR, 1)
        await send(AudioKind.AUDIO, 2, tone(1500, 1.0))
        await send(AudioKind.END, 2)
        deadline = time.monotonic() + 10
        while (heard := pitches(np.concatenate(caller.recorder.chunks))).count("high") < 40:
            assert time.monotonic() < deadline, f"turn 2 was not played: {heard.count('high')} frames heard"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # anything that would follow turn 2
        heard = pitches(np.concatenate(caller.recorder.chunks))

    strip = "".join({"low": "l", "high": "h", "": "."}[p] for p in heard)  # l = turn 1, h = turn 2
    low, first_high = heard.count("low"), heard.index("high")
    # About 0.4 s (20 frames) of turn 1 was heard before the interruption (plus what was on its way): far
    # from its 3 s, and none of it after turn 2 began.
    assert 5 <= low <= 60, f"{low} frames of the cleared turn were played: {strip}"
    assert "low" not in heard[first_high:], f"the cleared turn played after the next one began: {strip}"
