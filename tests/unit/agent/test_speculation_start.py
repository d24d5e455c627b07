"""When a speculative reply starts: two VAD windows (64 ms) of silence by default, and the
ended turn's audio is then exactly the paused audio, so the speculation is the one committed.
Sans-I/O: the TurnDetector fed window by window, built from the default Settings."""

from __future__ import annotations

from voxline.agent.turns import WINDOW_MS, SpeechEnded, SpeechPaused, SpeechResumed, TurnConfig, TurnDetector, TurnEvent
from voxline.config import Settings

WINDOW = b"\x01\x00" * 512  # 32 ms of 16 kHz s16le


def detector() -> TurnDetector:
    s = Settings()
    return TurnDetector(TurnConfig(pause_ms=s.speculation_pause_ms, end_silence_ms=s.end_of_turn_silence_ms,
                                   min_end_silence_ms=s.end_of_turn_min_ms))


def feed(d: TurnDetector, prob: float, ms: int) -> list[TurnEvent]:
    events: list[TurnEvent] = []
    for _ in range(ms // WINDOW_MS):
        events += d.push(WINDOW, prob)
    return events


def test_the_speculative_reply_starts_after_two_silent_windows() -> None:
    d = detector()
    feed(d, 0.9, 640)
    assert feed(d, 0.0, WINDOW_MS) == []
    [paused] = feed(d, 0.0, WINDOW_MS)
    assert isinstance(paused, SpeechPaused)
    assert d.position_ms - paused.speech_end_ms == 2 * WINDOW_MS


def test_speech_after_the_early_pause_makes_it_stale_and_the_turn_ends_once_with_all_of_it() -> None:
    d = detector()
    feed(d, 0.9, 640)
    first = feed(d, 0.0, 2 * WINDOW_MS)
    assert [type(e) for e in first] == [SpeechPaused]
    assert [type(e) for e in feed(d, 0.9, 320)] == [SpeechResumed]
    events = feed(d, 0.0, 2_000)
    paused = [e for e in events if isinstance(e, SpeechPaused)]
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(paused) == 1 and len(ended) == 1
    assert ended[0].pcm == paused[0].pcm  # the second speculation answers the whole turn
    assert len(ended[0].pcm) > len(first[0].pcm)  # type: ignore[union-attr]
