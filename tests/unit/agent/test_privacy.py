"""What a caller said and what the agent replied stay out of process logs and the logs topic
unless `log_transcripts` is on; the session's own events (its page) and record keep them."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent_harness import Call
from fakes import BusTap, VirtualClock, fake_models, speech
from voxline.bus.messages import decode_event
from voxline.bus.topics import Topic

SAID = "What is my secret account number?"
REPLY = "Noted your secret number."


async def _turn(clock: VirtualClock, tap: BusTap, on: bool, caplog: pytest.LogCaptureFixture) -> list[str]:
    logs_topic = await tap.bus.subscribe([Topic.LOGS])
    call = Call(clock, fake_models(clock), tap)
    call.agent.log_transcripts = on
    call.models.stt.texts = [SAID]
    call.models.llm.reply = REPLY
    await call.listen()
    with caplog.at_level(logging.INFO):
        await call.say(speech(700))
        await call.quiet(3000)
    await call.agent.close()
    shipped = []
    while True:
        try:
            message = await asyncio.wait_for(logs_topic.__anext__(), 0.1)
        except TimeoutError:
            break
        shipped.append(str(getattr(decode_event(message.value), "message", "")))
    await logs_topic.close()
    return shipped


async def test_transcripts_are_not_logged_by_default(clock: VirtualClock, tap: BusTap,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    shipped = await _turn(clock, tap, False, caplog)
    assert any(line.startswith("transcript:") for line in shipped) and "secret" not in "\n".join(shipped)
    process = "\n".join(r.getMessage() for r in caplog.records)
    assert "transcript:" in process and "reply:" in process  # the lines are there, redacted
    assert "secret" not in process
    page = "\n".join(tap.logs())
    assert SAID in page or "secret" in page  # the session's own page still shows what was said
    assert any(e.get("text") == SAID for e in tap.of("transcript.final"))


async def test_log_transcripts_puts_them_back(clock: VirtualClock, tap: BusTap,
                                              caplog: pytest.LogCaptureFixture) -> None:
    shipped = await _turn(clock, tap, True, caplog)
    assert "secret" in "\n".join(shipped)
    assert "secret" in "\n".join(r.getMessage() for r in caplog.records)
