"""Over real WebRTC with the real models: with `greeting` set, the agent speaks first, and it is history."""

from __future__ import annotations

import pytest

from tests.integration.conftest import start_server, stop_server
from voxline.client.caller import Caller
from voxline.config import Settings

pytestmark = pytest.mark.models
GREETING = "Hello, how can I help you today?"


async def test_the_greeting_is_heard_when_the_call_connects_and_kept_in_history(models, stt) -> None:
    running, cleanup = await start_server(Settings(max_sessions=2, session_create_rate_per_min=1000,
                                                   greeting=GREETING), models)
    try:
        async with Caller(running.url) as caller:
            spoken = await caller.wait_for(lambda e: e["type"] == "agent.text" and e.get("final"), 30)
            assert spoken is not None and spoken["text"] == GREETING and spoken["turn"] == 1, caller.events
            assert await caller.wait_reply_done(after=1, timeout=60), caller.events[-10:]
            assert caller.recorder.first_sound is not None  # heard, not only announced
            agent = running.orchestrator.sessions[caller.session_id]
            assert agent.conv.history_json() == [{"turn": 1, "role": "assistant", "content": GREETING}]
            assert agent.conv.state.value == "listening"
            assert not caller.of_type("transcript.final")  # the caller said nothing: nothing was answered
    finally:
        await stop_server(cleanup)
