"""Turn-taking over real WebRTC with the real models: backchannels, interruptions, echo.

Each test is one call of the turn-taking benchmark's harness (`voxline.bench.turns`), so the
benchmark and the tests measure one way. Rates and reaction times are benchmark figures
(`voxline bench --turns`); these tests assert what happened, not how fast.
"""

from __future__ import annotations

import pytest

from voxline.bench.turns import report_text, run_case, run_turns, summary
from voxline.bench.turns_corpus import KINDS, LONG, Case, build, espeak

pytestmark = pytest.mark.models


# Not yet seen passing: written while the machine ran at a load of 10-18 on 2 cores, where calls
# timed out before the agent spoke (the harness test below passed there). The lead unmarks them
# once they pass on a quiet machine.
UNVERIFIED = pytest.mark.xfail(strict=False, reason="not yet seen passing on a quiet machine (see the echo-turnbench report)")


@UNVERIFIED
async def test_a_backchannel_during_a_reply_leaves_it_playing_to_the_end(voice_server) -> None:
    case = Case("backchannel", "mm-hmm", espeak(LONG[0]), espeak("mm-hmm", 1))
    out = await run_case(voice_server.url, case)
    assert out.ok, out
    assert not out.interrupted and out.played_on, out


@UNVERIFIED
async def test_a_real_interruption_stops_the_reply_and_is_answered(voice_server) -> None:
    case = Case("interruption", "stop", espeak(LONG[1]), espeak("Stop. What is two plus two?", 1))
    out = await run_case(voice_server.url, case)
    assert out.ok, out
    assert out.interrupted and out.reaction_ms is not None and out.answered_after, out


@UNVERIFIED
async def test_the_agents_voice_looped_back_does_not_interrupt_it(voice_server) -> None:
    """A caller without echo cancellation: its microphone sends the reply back, 120 ms later, at -10 dB."""
    case = Case("echo", "120 ms, -10 dB", espeak(LONG[0]), echo_delay_ms=120, echo_gain_db=-10)
    out = await run_case(voice_server.url, case)
    assert out.ok, out
    assert not out.interrupted, out


async def test_the_turn_benchmark_runs_one_case_of_each_kind(voice_server) -> None:
    outcomes = await run_turns(voice_server.url, build(per_kind=1))
    assert sorted(o.kind for o in outcomes) == sorted(KINDS)
    assert all(o.ok for o in outcomes), outcomes
    s = summary(outcomes, max_wait_ms=500)
    assert s["voice_to_voice_ms"]["n"] == 1 and s["end_of_turn_wait_ms_p50"] is not None
    assert s["false_end_of_turn"]["n"] == s["false_interruption"]["n"] == s["self_interruptions"]["n"] == 1
    table = report_text({"summary": s})
    assert "self-interruptions from echo" in table and "voice-to-voice" in table
