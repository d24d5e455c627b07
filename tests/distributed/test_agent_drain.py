"""A rollout of the agents with a live call: SIGTERM the agent that holds it mid-turn.

Two agents share sessions through one consumer group on a real tansu. The owner is given
SIGTERM while a reply is being made: it finishes that reply (bounded by `drain_timeout_s`),
then leaves the group, which hands its partitions to the other at once (no session timeout to
wait for, unlike a SIGKILL: test_failover.py). The other takes the session over on its next
audio, gets the history from the media server, and answers the next question. Printed: the
pause from SIGTERM to the other agent's first audio (docs/kafka.md, docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import signal
import time

from procs import model_services, open_call, proc_logs  # noqa: F401
from test_failover import TAKEOVER_TIMEOUT_S, TURN_TIMEOUT_S, first_turn, history_count, owner_of, pair, resumed_line  # noqa: F401

from audio_helpers import at48k, words
from sentences import PLANET, WEATHER
from voxline.bench.system import proc_sample


def usage(procs) -> dict[str, tuple[float, float]]:  # noqa: ANN001
    """{name: (CPU seconds, RSS MB)} of the processes still running: the sizing figures' source."""
    return {p.name: s for p in procs if p.pid is not None and (s := proc_sample(p.pid)) is not None}


def report_usage(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], wall: float) -> None:
    for name, (cpu, rss) in after.items():
        if name in before:
            print(f"  {name}: {100 * (cpu - before[name][0]) / wall:.1f} % of a core over {wall:.0f} s"
                  f" of one talking caller, RSS {rss:.0f} MB")


async def test_sigterm_of_the_agent_mid_turn_finishes_the_turn_and_the_other_answers_the_next(
        pair, speech) -> None:  # noqa: F811
    media = pair.media
    async with open_call(media.url) as caller:
        sid = caller.session_id
        services = pair.services
        watched = [media, *pair.agents(), services.stt, services.llm, services.tts]
        before, started = usage(watched), time.time()
        await first_turn(caller, speech)
        victim = await owner_of(pair.agents())
        survivor = next(a for a in pair.agents() if a is not victim)

        # Turn 2 is in flight (transcribed, the reply being made) when the rollout reaches its agent.
        await caller.say(at48k(speech(PLANET.text)))
        heard = await caller.wait_for(lambda e: e["type"] == "transcript.final" and e.get("turn", 0) == 2,
                                      TURN_TIMEOUT_S)
        assert heard is not None, caller.events[-20:]
        assert victim.popen is not None
        termed_at = time.time()
        victim.popen.send_signal(signal.SIGTERM)
        assert await caller.wait_reply_done(after=2, timeout=TURN_TIMEOUT_S), caller.events[-20:]
        reply2 = [e for e in caller.of_type("agent.text") if e.get("final") and e.get("turn") == 2]
        assert reply2 and reply2[-1]["text"].strip(), "the turn in flight was not finished"
        assert await asyncio.to_thread(victim.popen.wait, 40) == 0  # drained and left cleanly

        # The other agent takes the session over on the caller's next audio (its microphone
        # sends silence all along) and gets both turns' history from the media server.
        restored = await caller.wait_for(lambda e: resumed_line(e, termed_at), TAKEOVER_TIMEOUT_S)
        assert restored is not None, f"no take-over within {TAKEOVER_TIMEOUT_S} s:\n{survivor.tail()}"
        assert history_count(restored) == 4, restored  # turns 1 and 2, questions and answers: nothing lost
        took = next(r for r in survivor.session_records(sid) if "taken over" in r.get("msg", ""))
        left = next(r for r in victim.records() if r.get("msg", "").startswith("drained: left the consumer group"))
        print(f"\nagent SIGTERM (tansu): the reply in flight finished and the agent left the group"
              f" {left['ts'] - termed_at:.1f} s after SIGTERM; the other agent handled the call's audio"
              f" {took['ts'] - left['ts']:.1f} s later (the rebalance pause), {took['ts'] - termed_at:.1f} s after"
              f" SIGTERM; history restored {restored['ts'] - took['ts']:.1f} s after that")
        assert took["ts"] > left["ts"]  # one agent at a time: the hand-over follows the leave

        await caller.say(at48k(speech(WEATHER.text)))
        assert await caller.wait_reply_done(after=3, timeout=TURN_TIMEOUT_S), caller.events[-20:]
        heard3 = " ".join(e["text"] for e in caller.of_type("transcript.final") if e.get("turn", 0) >= 3)
        assert WEATHER.heard <= words(heard3), heard3
        assert "reply: " in " | ".join(r["msg"] for r in survivor.session_records(sid))  # answered there
        status, session = await media.get_json_async(f"/sessions/{sid}", headers=caller.session_headers)
        assert status == 200 and session["state"] == "connected" and session["turns"] == 3, session
        said = " ".join(m["content"] for m in session["history"] if m["role"] == "user")
        assert {"telephone", "planet", "weather"} <= words(said), session["history"]
        assert not caller.of_type("error"), caller.of_type("error")
        report_usage(before, usage(watched), time.time() - started)  # the victim is gone: not listed
