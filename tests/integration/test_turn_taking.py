"""Turn-taking over real WebRTC with the real models: backchannels, interruptions, echo.

Each test is one call of the turn-taking benchmark's harness (`voxline.bench.turns`), so the
benchmark and the tests measure one way. Rates and reaction times are benchmark figures
(`voxline bench --turns`); these tests assert what happened, not how fast.
"""

from __future__ import annotations

import asyncio

import pytest

from voxline.bench.turns import report_text, run_case, run_turns, summary
from voxline.bench.turns_corpus import KINDS, LONG, Case, build, espeak
from voxline.client.caller import Caller

pytestmark = pytest.mark.models


async def test_a_backchannel_during_a_reply_leaves_it_playing_to_the_end(voice_server) -> None:
    case = Case("backchannel", "mm-hmm", espeak(LONG[0]), espeak("mm-hmm", 1))
    out = await run_case(voice_server.url, case)
    assert out.ok, out
    assert not out.interrupted and out.played_on, out


async def test_a_real_interruption_stops_the_reply_and_is_answered(voice_server) -> None:
    """The caller has no echo, but the server's canceller is on (for the echo test): their words
    over the reply must not be taken for the agent's echo (a chance lag over them did, #13)."""
    case = Case("interruption", "stop", espeak(LONG[1]), espeak("Stop. What is two plus two?", 1))
    out = await run_case(voice_server.url, case)
    assert out.ok, out
    assert out.interrupted and out.reaction_ms is not None and out.answered_after, out


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


@pytest.mark.xfail(strict=False, reason=(
    "a race since the one-thread LLM steps (7e7df46) made the reply sooner: the caller goes on when "
    "turn 1's transcript arrives, and its onset can now come after the reply's first audio (beyond "
    "turn_continue_ms), a new turn by design; failed 2 of ~8 runs in session 8. Next: start the second "
    "part at a fixed point before the reply (hold the reply or say it after a fixed pause)"))
async def test_the_page_sees_a_resumed_turn_as_one_continued_turn(voice_server) -> None:
    """The turn-state events the page gets when a caller goes on after the end of their turn
    was decided (they resume as the agent is thinking): the early turn is dropped unheard and
    the next transcript, of the whole utterance, says `continued: true`."""
    caller = Caller(voice_server.url)
    try:
        await caller.connect()
        await caller.client.set_listening(True)
        await asyncio.sleep(0.4)
        await caller.say(espeak("What is the capital of France?"))
        # The caller goes on the moment the first part is transcribed, before any reply is heard.
        first = await caller.wait_for(lambda e: e.get("type") == "transcript.final" and e.get("turn") == 1, 30)
        assert first is not None, caller.events[-10:]
        heard_before = caller.first_sound_after(0.0)
        await caller.say(espeak("And what is the capital of Spain?"))
        assert await caller.wait_reply_done(after=2, timeout=60), caller.events[-12:]
    finally:
        await caller.close()
    assert heard_before is None, "the agent spoke before the caller went on: no continued turn to see"
    finals = [(e["turn"], e.get("continued")) for e in caller.of_type("transcript.final")]
    assert finals == [(1, False), (2, True)], finals
    whole = next(e["text"] for e in caller.of_type("transcript.final") if e["turn"] == 2).lower()
    # The whole utterance, transcribed together: both questions' words. (Not "france" itself:
    # Whisper tiny.en hears this espeak "of France" as "and friends" from the file too, and over
    # the call in some of the packets' phases: README, Word error rate.)
    assert whole.count("capital") == 2 and "what" in whole.split("capital")[1], whole
    states = [(e["state"], e["turn"]) for e in caller.of_type("state") if "turn" in e and "listening" not in e]
    assert states == [("listening", 0), ("user_speaking", 0), ("thinking", 1), ("user_speaking", 1),
                      ("thinking", 2), ("agent_speaking", 2), ("listening", 2)], states
    # Answered once: a reply (or, on a machine too busy for the LLM's timeout, its apology), to turn 2.
    answered = {e["turn"] for e in caller.of_type("agent.text") if e.get("final")} | {
        e["turn"] for e in caller.of_type("error")}
    assert answered == {2}, answered
