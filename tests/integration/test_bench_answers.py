"""`voxline bench --answers` end to end on two items, one a two-turn follow-up, over real WebRTC
to the voice loop with the real STT, TTS, VAD and turn model; the LLM is a fake at the model
boundary that answers from the prompt it is given, so the test shows that each turn was said,
heard, answered, timed and scored, and that a follow-up's history reached the LLM in one call.
Accuracy of the real model is a benchmark figure (README), not asserted here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.conftest import start_server, stop_server
from voxline.agent.models import Models
from voxline.bench.answers import run_answers, speak_items
from voxline.bench.answers_corpus import GROUPS, ITEMS
from voxline.bench.answers_report import answers_report, answers_report_text
from voxline.config import Settings
from voxline.services.base import ChatMessage
from voxline.services.threads import ModelThread

pytestmark = pytest.mark.models


class PromptReader:
    """Answers the planets question, and the favourite colour from what the caller said before."""

    name = "prompt-reader"

    async def stream(self, messages: list[ChatMessage], max_tokens: int | None = None) -> AsyncIterator[str]:
        asked = messages[-1]["content"].lower()
        before = " ".join(m["content"] for m in messages[:-1] if m["role"] == "user").lower()
        if "planets" in asked:
            yield "There are eight planets."
        elif "color" in asked or "colour" in asked:
            yield f"Your favorite color is {'blue' if 'blue' in before else 'a mystery to me'}."
        else:
            yield "Noted."

    async def close(self) -> None:
        return None


async def test_two_items_are_asked_over_calls_and_scored(stt, tts, vad_model, turn_model) -> None:  # type: ignore[no-untyped-def]
    models = Models(stt, PromptReader(), tts, vad_model, ModelThread("vad"),
                    turn_model=turn_model if turn_model.available else None)
    running, cleanup = await start_server(Settings(max_sessions=2, session_create_rate_per_min=1000), models)
    try:
        planets = next(i for i in ITEMS if "planets" in i.turns[0].say)
        colour = next(i for i in ITEMS if "favorite color" in i.turns[0].say)
        items = [planets, colour]
        rows = await run_answers(running.url, items, speak_items(items), timeout=60.0)
    finally:
        await stop_server(cleanup)
        models.vad_thread.close()
    assert [(r["item"], r["turn"]) for r in rows] == [(1, 1), (2, 1), (2, 2)], rows
    assert all(r["transcript"] and r["reply"] and r["error"] is None for r in rows), rows
    assert all(r["voice_to_voice_ms"] is not None and r["voice_to_voice_ms"] > 0 for r in rows), rows
    assert [r["scored"] for r in rows] == [True, False, True]
    assert all(r["heard_right"] for r in rows), rows
    # Right only if the follow-up was asked in the same call as what it follows.
    assert [r["right"] for r in rows] == [True, False, True], rows
    report = answers_report(rows, ["default"], GROUPS, {}, {"split": "test", "items": 2})
    assert report["summary"]["default"]["all"]["accuracy_pct"] == 100
    assert "follow-up" in answers_report_text(report)
