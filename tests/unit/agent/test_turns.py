"""End-of-turn detection from VAD probabilities, replayed window by window (no models)."""

from __future__ import annotations

import numpy as np

from voxline.agent.turns import (
    WINDOW_MS,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnConfig,
    TurnDetector,
    TurnEvent,
)

WINDOW_BYTES = 512 * 2  # 32 ms of 16 kHz s16le


def window(i: int, loud: bool = False) -> bytes:
    """A window whose bytes say where it was fed, so tests can check exactly which audio is kept.

    Its samples are quiet (below -54 dBFS: digits of `i` in base 64) unless `loud` (a sound
    below the VAD's threshold: the fading end of a word).
    """
    digits = np.array([i % 64, i // 64 % 64, i // 4096 % 64, 4000 if loud else 0], dtype=np.int16)
    return np.tile(digits, WINDOW_BYTES // 8).tobytes()


def index_of(w: bytes) -> int:
    d = np.frombuffer(w[:8], dtype=np.int16)
    return int(d[0]) + 64 * int(d[1]) + 4096 * int(d[2])


def windows_in(pcm: bytes) -> list[int]:
    assert len(pcm) % WINDOW_BYTES == 0
    return [index_of(pcm[i:i + WINDOW_BYTES]) for i in range(0, len(pcm), WINDOW_BYTES)]


class Feeder:
    def __init__(self, config: TurnConfig | None = None) -> None:
        self.detector = TurnDetector(config)
        self.n = 0
        self.events: list[TurnEvent] = []

    def feed(self, prob: float, ms: int, loud: bool = False) -> list[TurnEvent]:
        """Feed `ms` of audio (rounded up to whole windows) at probability `prob`."""
        out: list[TurnEvent] = []
        for _ in range(-(-ms // WINDOW_MS)):
            out += self.detector.push(window(self.n, loud), prob)
            self.n += 1
        self.events += out
        return out

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def test_silence_alone_gives_no_events() -> None:
    f = Feeder()
    assert f.feed(0.0, 5_000) == []
    assert not f.detector.speaking


def test_clicks_shorter_than_min_speech_never_start_speech() -> None:
    f = Feeder(TurnConfig(min_speech_ms=160))
    for _ in range(20):
        f.feed(0.9, 128)  # 4 windows: below 160 ms
        f.feed(0.1, 64)
    assert f.events == []


def test_speech_starts_after_min_speech_at_the_first_speech_window() -> None:
    f = Feeder(TurnConfig(min_speech_ms=160))
    f.feed(0.0, 320)  # windows 0-9
    started = f.feed(0.9, 160)  # windows 10-14
    assert started == [SpeechStarted(at_ms=10 * WINDOW_MS)]
    assert f.detector.speaking


def test_turn_ends_after_end_silence_and_keeps_pre_roll_and_trailing_audio() -> None:
    cfg = TurnConfig(pre_roll_ms=320, trailing_ms=160, end_silence_ms=500, pause_ms=192)
    f = Feeder(cfg)
    f.feed(0.0, 20 * WINDOW_MS)  # windows 0-19
    f.feed(0.9, 30 * WINDOW_MS)  # windows 20-49: speech
    f.feed(0.0, 480)
    assert not f.of(SpeechEnded)  # 480 ms of silence is not yet the end
    ended = f.feed(0.0, WINDOW_MS)
    [end] = [e for e in ended if isinstance(e, SpeechEnded)]
    assert end.speech_end_ms == 50 * WINDOW_MS
    assert end.at_ms == end.speech_end_ms + 16 * WINDOW_MS  # 500 ms rounded up to whole windows
    kept = windows_in(end.pcm)
    # 10 windows (320 ms) of pre-roll, the speech, and 5 windows (160 ms) of trailing silence.
    assert kept == list(range(10, 55))
    assert not f.detector.speaking


def test_a_word_whose_opening_run_fell_short_keeps_the_pre_roll_before_it() -> None:
    """"What" over Opus, espeak en-us+m3: 4 windows above the threshold, the stop consonant
    dips for 6, then the speech goes on. The pre-roll is counted back from the first run, not
    the confirmed one (from there it began at the first run's first window: the word's onset,
    softer than the threshold, was cut and Whisper heard "Well")."""
    f = Feeder(TurnConfig(pre_roll_ms=320, min_speech_ms=160))
    f.feed(0.0, 20 * WINDOW_MS)  # windows 0-19
    f.feed(0.9, 4 * WINDOW_MS)  # 20-23: short of min_speech_ms
    f.feed(0.2, 6 * WINDOW_MS)  # 24-29: the dip
    f.feed(0.9, 20 * WINDOW_MS)  # 30-49: the speech
    f.feed(0.0, 600)
    [end] = f.of(SpeechEnded)
    assert windows_in(end.pcm)[0] == 10  # 10 windows (320 ms) before the first run


def test_a_short_sound_long_before_the_speech_stays_out_of_the_turn() -> None:
    f = Feeder(TurnConfig(pre_roll_ms=320, min_speech_ms=160))
    f.feed(0.0, 20 * WINDOW_MS)  # windows 0-19
    f.feed(0.9, 3 * WINDOW_MS)  # 20-22: a click
    f.feed(0.0, 10 * WINDOW_MS)  # 23-32: as long a gap as the pre-roll
    f.feed(0.9, 20 * WINDOW_MS)  # 33-52: the speech
    f.feed(0.0, 600)
    [end] = f.of(SpeechEnded)
    assert windows_in(end.pcm)[0] == 23  # the usual pre-roll, from the speech back


def test_pause_then_speech_gives_paused_then_resumed_and_one_end() -> None:
    f = Feeder(TurnConfig(pause_ms=192, end_silence_ms=500))
    f.feed(0.9, 320)
    paused = f.feed(0.0, 256)
    assert [type(e) for e in paused] == [SpeechPaused]
    resumed = f.feed(0.9, 64)
    assert [type(e) for e in resumed] == [SpeechResumed]
    assert resumed[0].at_ms == f.detector.position_ms - 2 * WINDOW_MS
    f.feed(0.0, 600)
    assert [type(e) for e in f.events] == [SpeechStarted, SpeechPaused, SpeechResumed, SpeechPaused, SpeechEnded]
    # The turn's audio is the whole utterance, across the pause.
    end = f.of(SpeechEnded)[0]
    assert windows_in(end.pcm)[0] == 0


def test_paused_audio_equals_the_final_turn_audio_when_no_speech_follows() -> None:
    # Speculative transcription of SpeechPaused.pcm is reused only if it is exactly the turn.
    for pause_ms, trailing_ms, end_ms in [(192, 160, 500), (200, 160, 700), (320, 96, 400), (160, 160, 500)]:
        f = Feeder(TurnConfig(pause_ms=pause_ms, trailing_ms=trailing_ms, end_silence_ms=end_ms))
        f.feed(0.0, 200)
        f.feed(0.9, 640)
        f.feed(0.0, end_ms + WINDOW_MS)
        [paused], [ended] = f.of(SpeechPaused), f.of(SpeechEnded)
        assert paused.pcm == ended.pcm, (pause_ms, trailing_ms, end_ms)
        assert paused.speech_end_ms == ended.speech_end_ms


def test_paused_audio_is_stale_after_speech_resumes() -> None:
    f = Feeder()
    f.feed(0.9, 320)
    f.feed(0.0, 256)
    f.feed(0.9, 320)
    f.feed(0.0, 600)
    paused, ended = f.of(SpeechPaused)[0], f.of(SpeechEnded)[0]
    assert len(ended.pcm) > len(paused.pcm)
    assert ended.pcm.startswith(paused.pcm)


def test_hysteresis_keeps_a_turn_alive_between_the_two_thresholds() -> None:
    f = Feeder(TurnConfig(threshold=0.5, neg_threshold=0.35))
    f.feed(0.9, 320)
    f.feed(0.4, 2_000)  # weak but still speech
    assert f.of(SpeechPaused) == [] and f.of(SpeechEnded) == []
    f.feed(0.2, 600)
    assert len(f.of(SpeechEnded)) == 1


def test_max_turn_forces_an_end() -> None:
    f = Feeder(TurnConfig(max_turn_ms=1_000, pre_roll_ms=320))
    f.feed(0.9, 5_000)
    ended = f.of(SpeechEnded)
    assert ended, "a never-ending speaker must still get turns"
    first = ended[0]
    assert len(first.pcm) // WINDOW_BYTES * WINDOW_MS <= 1_000 + WINDOW_MS
    assert first.at_ms <= 1_000 + 5 * WINDOW_MS
    # Speech that carries on starts a new turn.
    assert len(f.of(SpeechStarted)) >= 2


def test_speech_end_is_where_the_speech_stopped_even_for_a_minimal_turn() -> None:
    f = Feeder(TurnConfig(min_speech_ms=160, end_silence_ms=500))
    f.feed(0.0, 3_200)  # 100 windows
    f.feed(0.9, 160)  # windows 100-104: just enough to start
    f.feed(0.0, 600)
    [end] = f.of(SpeechEnded)
    assert end.speech_end_ms == 105 * WINDOW_MS
    assert end.at_ms - end.speech_end_ms == 16 * WINDOW_MS


def test_second_turn_reports_its_own_speech_end() -> None:
    f = Feeder()
    f.feed(0.9, 640)
    f.feed(0.0, 600)
    f.feed(0.0, 1_000)
    start = f.n
    f.feed(0.9, 160)  # minimal second turn
    f.feed(0.0, 600)
    first, second = f.of(SpeechEnded)
    assert second.speech_end_ms == (start + 5) * WINDOW_MS
    assert second.speech_end_ms > first.at_ms


def test_reset_forgets_a_turn_in_progress() -> None:
    f = Feeder()
    f.feed(0.9, 320)
    f.detector.reset()
    assert not f.detector.speaking
    assert f.feed(0.0, 1_000) == []


def test_pre_roll_is_bounded() -> None:
    f = Feeder(TurnConfig(pre_roll_ms=320, trailing_ms=160, pause_ms=192))
    f.feed(0.0, 10_000)
    f.feed(0.9, 320)
    f.feed(0.0, 600)
    [end] = f.of(SpeechEnded)
    assert len(windows_in(end.pcm)) == 10 + 10 + 5  # pre-roll, speech, trailing


def test_a_pause_shorter_than_the_trailing_silence_still_matches_the_end() -> None:
    f = Feeder(TurnConfig(pause_ms=96, trailing_ms=160, end_silence_ms=500))
    f.feed(0.9, 640)
    f.feed(0.0, 700)
    [paused] = f.of(SpeechPaused)
    [ended] = f.of(SpeechEnded)
    assert paused.pcm == ended.pcm


def test_a_last_sound_still_fading_at_the_pause_holds_it_for_the_full_tail() -> None:
    """The sound still fades at pause_ms (64): the pause waits for the next window, which holds
    sound too, so the speculated audio and the ended turn keep the 96 ms tail, not a clipped 64."""
    f = Feeder()  # defaults: pause 64, trailing 96
    f.feed(0.0, 200)
    f.feed(0.9, 640)
    first = f.n
    f.feed(0.0, 32)
    assert f.feed(0.0, 32, loud=True) == []  # 64 ms, still fading: no pause yet
    [paused] = f.feed(0.0, 32, loud=True)  # 96 ms
    f.feed(0.0, 600)
    [ended] = f.of(SpeechEnded)
    assert isinstance(paused, SpeechPaused)
    assert windows_in(paused.pcm)[-1] == first + 2  # 96 ms of the silence
    assert ended.pcm == paused.pcm and ended.speech_end_ms == paused.speech_end_ms


def test_a_quiet_pause_starts_the_speculation_at_pause_ms() -> None:
    """Faded by pause_ms: the pause comes at 64 ms, and a sound after it stays out."""
    f = Feeder()
    f.feed(0.9, 640)
    f.feed(0.0, 32, loud=True)  # the sound fades within the pause
    [paused] = f.feed(0.0, 32)  # 64 ms: quiet, the pause now
    assert isinstance(paused, SpeechPaused)
    f.feed(0.0, 32, loud=True)  # 96: not the fading end of the word
    f.feed(0.0, 600)
    [ended] = f.of(SpeechEnded)
    assert ended.pcm == paused.pcm
    assert len(windows_in(ended.pcm)) == 20 + 2


def test_a_fading_sound_that_stops_before_the_tail_is_full_keeps_what_held_sound() -> None:
    f = Feeder(TurnConfig(trailing_ms=192))
    f.feed(0.9, 640)
    f.feed(0.0, 96, loud=True)  # 32, 64, 96: fading
    f.feed(0.0, 32)  # 128: quiet, the tail is settled: the pause now
    f.feed(0.0, 32, loud=True)  # 160: does not join
    f.feed(0.0, 600)
    [paused], [ended] = f.of(SpeechPaused), f.of(SpeechEnded)
    assert ended.pcm == paused.pcm
    assert len(windows_in(ended.pcm)) == 20 + 3


def test_speech_after_a_held_pause_starts_a_new_pause_with_a_fresh_tail() -> None:
    f = Feeder()
    f.feed(0.9, 640)
    f.feed(0.0, 96, loud=True)
    f.feed(0.9, 320)
    resumed_at = f.n
    f.feed(0.0, 600)
    paused, [ended] = f.of(SpeechPaused), f.of(SpeechEnded)
    assert [p.pause for p in paused] == [1, 2]
    assert windows_in(paused[0].pcm)[-1] == resumed_at - 10 - 1  # the first pause kept 96 ms
    assert windows_in(ended.pcm)[-1] == resumed_at + 1  # this pause was quiet: 64 ms
    assert ended.pcm == paused[-1].pcm
