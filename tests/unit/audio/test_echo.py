"""The echo canceller, sans-I/O: the agent's voice coming back is muted, the caller's is not."""

from __future__ import annotations

import numpy as np
import pytest

from voxline.audio.echo import BLOCK, RATE, EchoCanceller, EchoConfig
from voxline.bench import voices
from voxline.bus.codec import AudioKind

T0 = 1_000.0


def voice(seconds: float, seed: int, pitch: float = 120.0) -> np.ndarray:
    """Speech-like s16: a buzz at `pitch` with harmonics, through syllable-rate bursts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    buzz = sum(np.sin(2 * np.pi * pitch * k * t + rng.uniform(0, 6)) / k for k in range(1, 25))
    noise = rng.standard_normal(t.size) * 0.3
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 0.5
    return (6_000 * (buzz + noise) * envelope).astype(np.int16)


def through_line(x: np.ndarray, delay_ms: float, gain_db: float) -> np.ndarray:
    """An echo path: delayed, attenuated, band-limited (300-3,400 Hz) and a little noise."""
    n = np.arange(129) - 64
    band = (2 * 3_400 / RATE * np.sinc(2 * 3_400 / RATE * n) - 2 * 300 / RATE * np.sinc(2 * 300 / RATE * n))
    y = np.convolve(x.astype(np.float64), band * np.hamming(n.size))[: x.size] * 10 ** (gain_db / 20)
    y = np.concatenate([np.zeros(int(delay_ms * RATE / 1000)), y])[: x.size]
    return y + np.random.default_rng(9).standard_normal(x.size) * 3


def run(canceller: EchoCanceller, mic: np.ndarray, start: float = T0) -> np.ndarray:
    """Feed `mic` in 20 ms chunks stamped as captured from `start`; the output, concatenated."""
    mic = np.clip(mic, -32768, 32767).astype(np.int16)
    out = [np.frombuffer(canceller.process(mic[i:i + BLOCK].tobytes(), start + (i + BLOCK) / RATE), dtype=np.int16)
           for i in range(0, mic.size - BLOCK + 1, BLOCK)]
    return np.concatenate(out)


def loud_blocks(x: np.ndarray, floor_db: float = -20.0) -> np.ndarray:
    """Indexes of the 20 ms blocks within `floor_db` of the loudest."""
    e = (x[: x.size // BLOCK * BLOCK].astype(np.float64).reshape(-1, BLOCK) ** 2).mean(axis=1)
    return np.flatnonzero(10 * np.log10(e + 1) > 10 * np.log10(e.max() + 1) + floor_db)


def muted(x: np.ndarray) -> np.ndarray:
    return ~x[: x.size // BLOCK * BLOCK].reshape(-1, BLOCK).any(axis=1)


@pytest.mark.parametrize(("delay_ms", "gain_db"), [(20, -6), (120, -10), (300, -20)])
def test_the_agents_voice_coming_back_is_muted(delay_ms: float, gain_db: float) -> None:
    reply = voice(4.0, seed=1)
    canceller = EchoCanceller()
    canceller.feed_reference(reply.tobytes(), T0)
    echo = through_line(reply, delay_ms, gain_db)
    out = run(canceller, echo)
    loud = loud_blocks(echo)
    assert muted(out)[loud].mean() > 0.9  # the first fraction of a second finds the lag
    assert abs(canceller.stats.lag_ms - delay_ms) < 5


def test_the_caller_talking_over_the_echo_passes() -> None:
    reply, caller = voice(4.0, seed=1), voice(1.5, seed=2, pitch=200.0)
    canceller = EchoCanceller()
    canceller.feed_reference(reply.tobytes(), T0)
    mic = through_line(reply, 120, -6)
    at = 2 * RATE
    mic[at:at + caller.size] += caller
    out = run(canceller, mic)
    theirs = loud_blocks(caller, -15) + at // BLOCK
    assert not muted(out)[theirs].mean() > 0.1  # double talk: their words come through
    assert muted(out)[: at // BLOCK][loud_blocks(mic[:at])].mean() > 0.8  # and the echo before is gone


def test_a_caller_whose_client_cancels_echo_is_untouched() -> None:
    reply, caller = voice(3.0, seed=1), voice(3.0, seed=3, pitch=180.0)
    canceller = EchoCanceller()
    canceller.feed_reference(reply.tobytes(), T0)
    out = run(canceller, caller.astype(np.float64))
    assert muted(out)[loud_blocks(caller)].mean() < 0.05


def test_no_reference_means_no_work() -> None:
    caller = voice(1.0, seed=3)
    canceller = EchoCanceller()
    out = run(canceller, caller.astype(np.float64))
    assert np.array_equal(out, caller[: out.size]) and canceller.stats.blocks == 0


def test_reference_plays_back_to_back_and_a_clear_cuts_it() -> None:
    """Pieces sent at once play one after the other; after a clear, the rest never plays."""
    first, second = voice(1.5, seed=1), voice(1.5, seed=4, pitch=150.0)
    canceller = EchoCanceller()
    canceller.sent(AudioKind.AUDIO, first.tobytes(), T0, RATE)
    canceller.sent(AudioKind.AUDIO, second.tobytes(), T0 + 0.01, RATE)  # queued behind the first
    both = np.concatenate([first, second])
    echo = through_line(both, 100, -10)
    out = run(canceller, echo)
    loud = loud_blocks(echo)
    assert muted(out)[loud[loud > 1.6 * RATE // BLOCK]].mean() > 0.9  # the second piece's echo too

    canceller = EchoCanceller()
    canceller.sent(AudioKind.AUDIO, both.tobytes(), T0, RATE)
    canceller.sent(AudioKind.CLEAR, b"", T0 + 1.0, RATE)
    assert canceller.reference.end == round((T0 + 1.0) * RATE)


def test_a_paused_reply_echoes_after_the_resume() -> None:
    """Playout held for a second (a backchannel over the reply) goes on where it was: so does the echo."""
    reply = voice(3.0, seed=1)
    canceller = EchoCanceller()
    canceller.sent(AudioKind.AUDIO, reply.tobytes(), T0, RATE, turn=1)
    canceller.sent(AudioKind.PAUSE, b"", T0 + 1.0, RATE, turn=1)
    canceller.sent(AudioKind.RESUME, b"", T0 + 2.0, RATE, turn=1)
    played = np.concatenate([reply[:RATE], np.zeros(RATE, dtype=np.int16), reply[RATE:]])
    echo = through_line(played, 120, -10)
    out = run(canceller, echo)
    loud = loud_blocks(echo)
    assert muted(out)[loud[loud > 2.2 * RATE // BLOCK]].mean() > 0.9


def test_disabled_and_bounded() -> None:
    off = EchoCanceller(EchoConfig(enabled=False))
    off.feed_reference(voice(1.0, seed=1).tobytes(), T0)
    assert off.reference.samples.size == 0
    canceller = EchoCanceller()
    for i in range(40):  # 80 s of reply sent at once: the timeline keeps at most a minute
        canceller.feed_reference(voice(2.0, seed=i % 3).tobytes(), T0)
    assert canceller.reference.samples.size <= 60 * RATE


def test_an_echo_late_by_more_than_a_second_is_muted() -> None:
    """A starved loop or a grown jitter buffer on the caller's side: the echo comes 1.2 s late."""
    reply = voice(5.0, seed=3)
    canceller = EchoCanceller()
    canceller.feed_reference(reply.tobytes(), T0)
    echo = through_line(reply, 1_200, -10)
    out = run(canceller, echo)
    assert muted(out)[loud_blocks(echo)].mean() > 0.9
    assert abs(canceller.stats.lag_ms - 1_200) < 5


def test_an_echo_whose_lag_grows_mid_reply_is_followed() -> None:
    """The caller's jitter buffer grows by 600 ms after a stall: the canceller finds the new lag
    within a few blocks (a longer leak is heard as speech over the reply: a false pause)."""
    reply = voice(8.0, seed=4)
    canceller = EchoCanceller()
    canceller.feed_reference(reply.tobytes(), T0)
    cut = 4 * RATE
    before, after = through_line(reply, 150, -10), through_line(reply, 750, -10)
    mic = np.concatenate([before[:cut], after[cut:]])
    out = run(canceller, mic)
    late = loud_blocks(mic)
    late = late[late >= cut // BLOCK]
    assert (~muted(out)[late]).sum() <= 5  # at most 100 ms of echo leaks (the VAD needs 160 ms)
    assert abs(canceller.stats.lag_ms - 750) < 5


def test_input_stamped_with_jitter_still_lines_up_with_the_echo() -> None:
    """Chunks reach the media server 0-100 ms late at random (a caller's bursts): the stamps
    are jittered, the echo's lag is not, and the echo stays muted."""
    reply = voice(6.0, seed=5)
    canceller = EchoCanceller()
    canceller.feed_reference(reply.tobytes(), T0)
    echo = np.clip(through_line(reply, 120, -10), -32768, 32767).astype(np.int16)
    late = np.random.default_rng(11).uniform(0, 0.1, echo.size // BLOCK)
    out = np.concatenate([np.frombuffer(canceller.process(echo[i:i + BLOCK].tobytes(),
                                                          T0 + (i + BLOCK) / RATE + late[i // BLOCK]), dtype=np.int16)
                          for i in range(0, echo.size - BLOCK + 1, BLOCK)])
    assert muted(out)[loud_blocks(echo)].mean() > 0.9
    assert 115 < canceller.stats.lag_ms < 130  # against the earliest arrival: up to its few ms late


def test_the_reference_follows_the_media_servers_report_of_when_it_played() -> None:
    """The playout sent the reply 150 ms after the agent did, stalled 350 ms after 1.5 s (TTS
    late, a busy loop) and went on: the `playout` reports place the reference there, the
    agent's send time alone does not."""
    reply = voice(4.0, seed=1)
    cut = int(1.5 * RATE)
    played = np.concatenate([np.zeros(int(0.15 * RATE), dtype=np.int16), reply[:cut],
                             np.zeros(int(0.35 * RATE), dtype=np.int16), reply[cut:]])
    echo = through_line(played, 120, -10)
    loud = loud_blocks(echo)
    shares, placed = [], []
    for reported in (True, False):
        canceller = EchoCanceller()
        canceller.sent(AudioKind.AUDIO, reply[:cut].tobytes(), T0, RATE, turn=1)
        if reported:
            canceller.played(1, 0.0, T0 + 0.15, True)
        canceller.sent(AudioKind.AUDIO, reply[cut:].tobytes(), T0 + 1.9, RATE, turn=1)  # late: after the stall began
        if reported:
            canceller.played(1, 1.5, T0 + 1.65, False)
            canceller.played(1, 1.5, T0 + 2.0, True)
        at = round((T0 + 2.0) * RATE)
        placed.append(np.array_equal(canceller.reference.slice(at, at + 800), reply[cut:cut + 800]))
        out = run(canceller, echo)
        shares.append(muted(out)[loud[loud > 2.3 * RATE // BLOCK]].mean())  # after the stall
    assert placed == [True, False]  # the agent's guess is off by 100 ms there
    assert shares[0] > 0.9, shares



REPLY = ("The capital of France is Paris. It is a large city on the river Seine, famous for its museums, "
         "its food and the Eiffel Tower.")


def said(text: str, voice_name: str, wpm: int = 150) -> np.ndarray:
    """`text` spoken by espeak-ng at 16 kHz (real speech: the synthetic buzz above is spread too
    evenly over the spectrum to show what passes a caller's voice over the agent's)."""
    return np.frombuffer(voices.espeak(text, voice_name, wpm), dtype=np.int16)


def over_the_reply(mic: np.ndarray, caller: np.ndarray, at_s: float = 1.5) -> tuple[np.ndarray, np.ndarray, int]:
    """The caller's words `at_s` into the reply on `mic`: the canceller's output, their loud blocks, where they begin."""
    reply = said(REPLY, "en-us", 170)
    canceller = EchoCanceller()
    canceller.feed_reference(reply.tobytes(), T0)
    at = int(at_s * RATE) // BLOCK * BLOCK
    mic = np.concatenate([mic, np.zeros(max(0, at + caller.size - mic.size))])
    mic[at:at + caller.size] += caller
    return run(canceller, mic), loud_blocks(caller, -15) + at // BLOCK, at


@pytest.mark.parametrize(("text", "voice_name"), [("Stop. What is two plus two?", "en-gb"),
                                                  ("Wait, what time is it in London?", "en-us+f3"),
                                                  ("No, I meant the weather in Rome.", "en-gb-x-rp")])
def test_a_caller_with_no_echo_talking_over_the_reply_is_never_muted(text: str, voice_name: str) -> None:
    """No echo on the call (their client cancels it): a search over their first words finds a
    chance lag in the reply; no path fitted to their own words there may mute them."""
    reply = said(REPLY, "en-us", 170)
    quiet = np.random.default_rng(1).standard_normal(reply.size) * 3
    out, theirs, _ = over_the_reply(quiet, said(text, voice_name))
    assert not muted(out)[theirs].any()


@pytest.mark.parametrize(("text", "voice_name"), [("Stop. What is two plus two?", "en-us+f3"),
                                                  ("Wait, what time is it in London?", "en-gb"),
                                                  ("No, I meant the weather in Rome.", "en-us+f3")])
def test_a_caller_starting_over_a_loud_echo_passes_from_their_first_block(text: str, voice_name: str) -> None:
    """Their first words over the agent's voice (120 ms, -6 dB), when most of a block's energy is
    still the echo's: power in bands the echo cannot have put there passes the block."""
    reply = said(REPLY, "en-us", 170)
    out, theirs, at = over_the_reply(through_line(reply, 120, -6), said(text, voice_name))
    assert not muted(out)[theirs[:10]].any()  # their first 200 ms of speech, every block
    echo = through_line(reply, 120, -6)[:at]
    assert muted(out)[: at // BLOCK][loud_blocks(echo)].mean() > 0.9  # the echo before stays muted
