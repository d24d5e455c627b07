"""`voxline bench --answers` end to end on two items, one a two-turn follow-up, over real WebRTC
to the real voice loop (real models). Accuracy is a benchmark figure, not asserted here: only
that every turn was said, heard, answered, timed and scored."""

from __future__ import annotations

import pytest

from voxline.bench.answers import run_answers, speak_items
from voxline.bench.answers_corpus import GROUPS, ITEMS
from voxline.bench.answers_report import answers_report, answers_report_text

pytestmark = pytest.mark.models


async def test_two_items_are_asked_over_calls_and_scored(voice_server) -> None:  # type: ignore[no-untyped-def]
    fact = next(i for i in ITEMS if i.group == "facts" and i.split == "test")
    follow_up = next(i for i in ITEMS if i.group == "follow-up" and len(i.turns) == 2 and i.split == "test")
    items = [fact, follow_up]
    rows = await run_answers(voice_server.url, items, speak_items(items), timeout=60.0)
    assert [(r["item"], r["turn"]) for r in rows] == [(1, 1), (2, 1), (2, 2)], rows
    assert all(r["transcript"] and r["reply"] and r["error"] is None for r in rows), rows
    assert all(r["voice_to_voice_ms"] is not None and r["voice_to_voice_ms"] > 0 for r in rows), rows
    # The follow-up's two turns were two turns of one call, each heard (its last one is scored).
    assert [r["scored"] for r in rows] == [True, False, True]
    assert rows[1]["heard_right"] and rows[2]["heard_right"], rows
    report = answers_report(rows, ["default"], GROUPS, {}, {"split": "test", "items": 2})
    assert report["summary"]["default"]["all"]["n"] == 2
    assert "follow-up" in answers_report_text(report)
