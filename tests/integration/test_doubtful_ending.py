"""Whisper's beam readings as the end of a turn's evidence: an invented last word is doubted, a real one is not."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sentences import PAUSED, QUESTIONS
from voxline.agent.endpoint import EndOfTurn, EndOfTurnConfig
from voxline.config import Settings
from voxline.services.base import Heard, readings_of
from voxline.services.stt.whisper import WhisperSTT

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def beam_stt() -> Iterator[WhisperSTT]:
    """Whisper as the server runs it (`stt_beam_size`, 5): the session's STT is greedy, without readings."""
    stt = WhisperSTT(beam_size=Settings().stt_beam_size)
    yield stt
    stt.thread.close()
    stt.thread.join(30)


def decide(text: str) -> tuple[int, str]:
    e = EndOfTurn(EndOfTurnConfig(doubt_margin=Settings().end_of_turn_doubt_margin))
    e.text, e.readings = text, readings_of(text)
    d = e.decide()
    return d.wait_ms, d.reason


@pytest.mark.voice("espeak en-us+m3 165")  # the voice whose "...a table for" Whisper hears "...a table for it."
async def test_an_unfinished_sentence_waits_even_when_whisper_invents_its_end(
        beam_stt: WhisperSTT, speech: Callable[[str], bytes]) -> None:
    heard = await beam_stt.transcribe(speech(PAUSED[0]))
    assert isinstance(heard, Heard) and heard.readings, heard  # the beam's other hypotheses came with it
    wait_ms, reason = decide(heard)
    assert wait_ms == EndOfTurnConfig().max_ms, (heard, heard.readings, reason)


@pytest.mark.voice("espeak en-us+m3 165")
async def test_complete_questions_are_not_doubted(beam_stt: WhisperSTT, speech: Callable[[str], bytes]) -> None:
    for q in QUESTIONS[:6]:
        heard = await beam_stt.transcribe(speech(q.text))
        assert decide(heard)[1] != "last word doubtful", (q.text, heard, readings_of(heard))
