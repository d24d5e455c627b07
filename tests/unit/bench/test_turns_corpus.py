"""The turn-taking benchmark's corpus: enough varied cases of each kind for a rate, in the
ranges #13 asks for, and a looped-back echo whose delay can move during the call."""

from __future__ import annotations

import numpy as np

from voxline.bench import turns_corpus as tc
from voxline.bench.turns_caller import MOVE_EVERY_S, EchoSource
from voxline.client.audio import RATE


def _longest_silence_s(x: np.ndarray) -> float:
    quiet = np.abs(x.astype(np.int32)) < 50
    best = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        best = max(best, run)
    return best / RATE


def test_twelve_cases_a_kind_are_all_different_and_in_the_asked_ranges() -> None:
    cases = tc.build(12)
    for kind in tc.KINDS:
        of = [c for c in cases if c.kind == kind]
        assert len(of) == 12, kind
        assert len({c.name for c in of}) >= 8, (kind, [c.name for c in of])  # varied, not one case repeated
    paused = [c for c in cases if c.kind == "paused"]
    assert len({c.name.split(" [")[0] for c in paused}) == 12
    for c in paused:  # one pause at the incomplete point, 0.6-1.5 s (+ the voices' own silence around words)
        assert 0.55 <= _longest_silence_s(c.said) <= 2.0, c.name
    echoes = [c for c in cases if c.kind == "echo"]
    for c in echoes:
        assert -20 <= c.echo_gain_db <= -6 and 20 <= c.echo_delay_ms <= 300, c.name
        assert 20 <= c.echo_delay_ms + c.echo_move_ms <= 300, c.name
    assert sum(c.echo_move_ms != 0 for c in echoes) >= 3  # a lag that moves during the call
    overs = {c.name for c in cases if c.kind == "backchannel"}
    assert {"mm-hmm", "yeah", "okay", "right", "uh-huh"} <= overs and set(tc.SOUNDS) <= overs


def test_kinds_can_be_run_apart() -> None:
    cases = tc.build(2, kinds=("paused", "echo"))
    assert [c.kind for c in cases] == ["paused", "echo", "paused", "echo"]


def test_the_sounds_have_no_words_and_are_the_same_each_time() -> None:
    for name in tc.SOUNDS:
        a, b = tc.sound(name, 1), tc.sound(name, 1)
        assert np.array_equal(a, b) and a.size < RATE and int(np.abs(a).max()) > 2_000, name


def test_a_moving_echo_moves_its_delay_in_steps_from_the_first_sound_heard() -> None:
    source = EchoSource(delay_ms=40, gain_db=-10, move_ms=120)
    start = 10 * RATE
    assert source.delay_at(start) == 40 * RATE // 1000  # nothing heard yet
    source.hear(np.zeros(960, dtype=np.int16), start / RATE)
    delays = [source.delay_at(start + int(k * MOVE_EVERY_S * RATE) + 1) for k in range(5)]
    ms = [d * 1000 // RATE for d in delays]
    assert ms == [40, 80, 120, 160, 160], ms
    still = EchoSource(delay_ms=40, gain_db=-10)
    still.hear(np.zeros(960, dtype=np.int16), start / RATE)
    assert still.delay_at(start + 5 * RATE) == 40 * RATE // 1000
