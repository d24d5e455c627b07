"""Smart Turn v3 from the pipecat-ai wheel: loaded from the file, scored at pauses, batched, optional."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from sentences import TURN_ENDS
from voxline.services.turn_model import SmartTurn, model_path

pytestmark = pytest.mark.models


@pytest.fixture
def smart_turn(turn_model: SmartTurn) -> SmartTurn:
    if model_path() is None or not turn_model.available:
        pytest.fail("pipecat-ai is not installed (scripts/setup.sh installs it --no-deps)")
    return turn_model


async def test_scores_are_probabilities_and_pauses_of_many_sessions_share_one_call(
        smart_turn: SmartTurn, speech: Callable[[str], bytes]) -> None:
    clips = [speech(text) for text in TURN_ENDS]
    before = smart_turn.calls
    scores = await asyncio.gather(*(smart_turn.score(c) for c in clips))
    assert all(s is not None and 0.0 <= s <= 1.0 for s in scores)
    assert smart_turn.calls - before <= 2  # the first runs at once, the others wait and go together
    assert scores[0] == pytest.approx(smart_turn.run([clips[0]])[0], abs=1e-4)  # batching changes nothing


async def test_without_the_model_file_there_is_no_score(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = SmartTurn(tmp_path / "missing.onnx")
    assert not model.available
    assert await model.score(b"\x00\x00" * 16_000) is None
    assert "end-of-turn model not found" in caplog.text
    model.close()
