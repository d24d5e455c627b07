"""The split deployment as real processes on a real broker: media + two agents + STT/LLM/TTS services.

A caller speaks over WHIP/WebRTC to the media server; its audio crosses tansu to whichever agent
holds the session's partitions, which calls the three model services over HTTP, and the reply
comes back over the bus and the same peer connection. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from procs import BusConfig, Deployment, model_services, open_call, proc_logs, unique_prefix  # noqa: F401

from audio_helpers import at48k, words
from sentences import PLANET, SPAIN
from voxline.bus.topics import TOPICS
from voxline.client.audio import RATE
from voxline.client.caller import Caller

pytestmark = pytest.mark.distributed

PARTITIONS = 6  # not tansu's auto-create default (4): proves the bus created the topics itself
TURN_TIMEOUT_S = 60.0
QUIET_S = 8.0  # longer than every consumer poll/fetch/heartbeat interval and the session timeout
UNKNOWN_TOPIC = ("Unknown Topic Or Partition", "UnknownTopicOrPartition", "UNKNOWN_TOPIC_OR_PARTITION")


@pytest.fixture
async def split(kafka_broker: str, proc_logs, model_services) -> AsyncIterator[Deployment]:  # noqa: F811
    dep = Deployment(proc_logs, BusConfig(kafka_broker, unique_prefix(), PARTITIONS), model_services)
    try:
        await dep.up(agents=2)
        yield dep
    finally:
        dep.stop_all()


async def ask(caller: Caller, text: str, speech, turn: int) -> tuple[float, dict]:  # noqa: ANN001
    """Say `text`, wait for the reply to turn `turn` to finish; returns (speech end, summary)."""
    end = await caller.say(at48k(speech(text)))
    done = await caller.wait_reply_done(after=turn, timeout=TURN_TIMEOUT_S)
    heard = " ".join(e["text"] for e in caller.of_type("transcript.final") if e.get("turn") == turn)
    replies = [e for e in caller.of_type("agent.text") if e.get("final") and e.get("turn") == turn]
    first = caller.first_sound_after(end)
    return end, {"done": done, "heard": heard, "reply": replies[-1]["text"] if replies else "",
                 "v2v_ms": round((first - end) * 1000) if first else None,
                 "errors": [e for e in caller.of_type("error") if e.get("turn") == turn]}


async def test_a_spoken_turn_crosses_the_split_deployment_and_a_quiet_session_survives(split: Deployment, speech) -> None:
    media = split.media
    # Every topic exists, with the configured partition count, before anyone produced to it.
    admin = AIOKafkaAdminClient(bootstrap_servers=split.bus.bootstrap)
    await admin.start()
    try:
        names = [split.bus.prefix + t.value for t in TOPICS]
        described = {d["topic"]: d for d in await admin.describe_topics(names)}
        assert set(described) == set(names)
        for name, desc in described.items():
            assert desc["error_code"] == 0, desc
            assert len(desc["partitions"]) == PARTITIONS, name
    finally:
        await admin.close()

    async with open_call(media.url) as caller:
        sid = caller.session_id
        end1, t1 = await ask(caller, SPAIN.text, speech, 1)
        assert t1["done"], (t1, caller.events[-20:])
        assert not t1["errors"], t1
        assert SPAIN.heard <= words(t1["heard"]), t1
        assert t1["reply"].strip(), t1
        assert t1["v2v_ms"] is not None, "no reply audio reached the caller"
        reply_audio = caller.recorder.reply_audio()
        assert reply_audio.size > RATE // 2, f"only {reply_audio.size / RATE:.2f} s of reply audio"

        # Silence is normal: a session that says nothing for a while is neither dropped nor
        # errored, on the media server, on the agent, or in the consumers between them.
        quiet_from = time.time()
        await asyncio.sleep(QUIET_S)
        status, session = await media.get_json_async(f"/sessions/{sid}", headers=caller.session_headers)
        assert status == 200 and session["state"] == "connected" and not session.get("ended_at"), session
        assert not [e for e in caller.events if e.get("ts", 0) >= quiet_from and e["type"] in ("error", "session.ended")]

        _, t2 = await ask(caller, PLANET.text, speech, 2)
        assert t2["done"], (t2, caller.events[-20:])
        assert not t2["errors"], t2
        assert "planet" in words(t2["heard"]), t2
        assert t2["reply"].strip(), t2
        assert t2["v2v_ms"] is not None, "no reply audio for the turn after the quiet spell"
        print(f"\nsplit mode voice-to-voice: turn 1 {t1['v2v_ms']} ms, turn 2 {t2['v2v_ms']} ms")
        print("turn metrics:", [e.get("metrics") for e in caller.of_type("turn.metrics")])

        status, session = await media.get_json_async(f"/sessions/{sid}", headers=caller.session_headers)
        assert status == 200 and session["turns"] == 2, session

    # One agent served the whole session (its partitions stayed put); the other never saw it.
    owners = [a.name for a in split.agents() if a.session_records(sid)]
    assert len(owners) == 1, owners
    for proc in split.procs:
        text = proc.text()
        assert not any(marker in text for marker in UNKNOWN_TOPIC), f"{proc.name}: {proc.log_path}"
        assert proc.running, f"{proc.name} exited:\n{proc.tail()}"
